"""The compare pages, their links and the reusable version_diff include."""

from __future__ import annotations

import re

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from deployments.diff_context import build_diff_context
from tests import factories
from versions import services as version_services
from versions.diff import EN_DASH, MINUS

SCRIPT = '<script>alert("prompt")</script>'
INTRO = "You are Ada, the support assistant of Acme Cloud.\n"
BILLING = (
    "\nBilling questions: explain invoices and refunds. Look the invoice up first.\n"
    "Refunds under 50 EUR you may promise.\n"
)
CLOSING = "\nIf you do not know the answer, hand over to a human colleague.\n"


def compare_url(spec: str, slug: str = "support-bot") -> str:
    return reverse("admin:versions_agentversion_compare", args=[slug, spec])


def title_of(response) -> str:
    return re.search(r"<h1>(.*?)</h1>", response.content.decode(), re.S).group(1).strip()


@pytest.fixture
def history(agent, staging, production):
    """support-bot v1..v3: v2 lost the billing paragraph; production runs v2, staging v3."""
    v1 = factories.create_version(agent, system_prompt=INTRO + BILLING + CLOSING)
    v2 = factories.create_version(
        agent,
        system_prompt=INTRO + CLOSING,
        change_description="Tighten the tone.",
        temperature=0.5,
    )
    v3 = factories.create_version(
        agent,
        system_prompt=INTRO + CLOSING,
        model="gpt-4o",
        tools=["lookup_order", "escalate_to_human"],
        guardrails={"blocked_topics": ["medical advice", "legal advice"]},
    )
    factories.deploy(v1, production)
    factories.deploy(v2, production)
    factories.deploy(v3, staging)
    return {"v1": v1, "v2": v2, "v3": v3}


# --- the compare page ----------------------------------------------------------------


def test_compare__superuser__both_versions_summary_and_removed_paragraph_left_only(
    admin_client, history
):
    response = admin_client.get(compare_url("1...2"))

    assert response.status_code == 200
    assert title_of(response) == "support-bot v1 → v2"
    content = response.content.decode()
    assert "Tighten the tone." in content  # the new version's change description
    assert f"{MINUS}1 paragraph" in content
    assert "agentconfig/diff.css" in content
    # The billing lines are removed rows: text on the left, a hatched empty cell on the right
    rows = re.findall(r'<div class="ac-diff-row ac-row-delete">(.*?)</div>', content, re.S)
    assert any("Billing questions: explain invoices" in row for row in rows)
    for row in rows:
        assert '<span class="ac-code ac-new ac-none"></span>' in row
    # Temperature changed and is marked so without colour
    assert re.search(r"Temperature <span class=\"ac-badge ac-badge-changed\">changed", content)
    assert "<del>0.2</del>" in content
    assert "<ins>0.5</ins>" in content


def test_compare__tools_and_guardrails__added_removed_by_json_path(admin_client, history):
    response = admin_client.get(compare_url("2...3"))

    content = response.content.decode()
    assert response.status_code == 200
    assert re.search(r"<ins>escalate_to_human</ins>\s*<span class=\"quiet\">added", content)
    assert "<code>blocked_topics[1]</code>" in content
    assert "<ins><code>&quot;legal advice&quot;</code></ins>" in content
    assert "<ins>gpt-4o</ins>" in content


def test_compare__same_version__identical_configuration(admin_client, history):
    response = admin_client.get(compare_url("2...2"))

    assert response.status_code == 200
    assert "identical configuration" in response.content.decode()
    assert "no changes" in response.content.decode()


def test_compare__user_with_version_view_permission__200(client_with_permissions, history):
    client = client_with_permissions("versions.view_agentversion")

    assert client.get(compare_url("1...2")).status_code == 200


@pytest.mark.parametrize("permissions", [(), ("agentconfig.view_agent",)])
def test_compare__user_without_version_view_permission__403_naming_it(
    client_with_permissions, history, permissions
):
    client = client_with_permissions(*permissions)

    response = client.get(compare_url("1...2"))

    assert response.status_code == 403
    assert "versions.view_agentversion" in response.content.decode()
    assert "Billing questions" not in response.content.decode()


def test_compare__anonymous__redirected_to_login(client, history):
    response = client.get(compare_url("1...2"))

    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.parametrize(
    ("spec", "title"),
    [
        ("previous...3", "support-bot v2 → v3"),
        ("previous...v2", "support-bot v1 → v2"),
        ("1...latest", "support-bot v1 → v3"),
        ("active@production...latest", "support-bot v2 → v3"),
        ("active@staging...active@production", "support-bot v3 → v2"),
        ("v1...active@production", "support-bot v1 → v2"),
    ],
)
def test_compare__aliases__resolve_to_the_right_versions(admin_client, history, spec, title):
    response = admin_client.get(compare_url(spec))

    assert response.status_code == 200
    assert title_of(response) == title


def test_compare__alias_in_url__shown_next_to_the_version(admin_client, history):
    content = admin_client.get(compare_url("active@production...latest")).content.decode()

    assert '<span class="ac-alias">= active@production</span>' in content
    assert '<span class="ac-alias">= latest</span>' in content


def test_compare__previous__is_the_version_it_was_based_on(admin_client, agent, history):
    # Given v4 edited from v1 (someone else made v2 and v3 meanwhile)
    version_services.create_version(
        agent=agent,
        actor=factories.ACTOR,
        config=factories.config(system_prompt=INTRO + BILLING + "Be brief.\n"),
        change_description="from v1",
        source="cli",
        derived_from=history["v1"],
    )

    response = admin_client.get(compare_url("previous...4"))

    assert title_of(response) == "support-bot v1 → v4"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1...9", "has no version v9 (its versions are v1-v3)"),
        ("1...99999999999", "has no version 99999999999"),
        ("nope...2", "&#x27;nope&#x27; is not a version of support-bot"),
        ("previous...1", "v1 is its first version: there is nothing before it"),
        ("2...previous", "&#x27;previous&#x27; means the version before the right-hand one"),
        ("active@moon...2", "there is no environment &#x27;moon&#x27;"),
        ("active...2", "&#x27;active&#x27; needs an environment"),
        ("1..2", "is not a comparison. Write &lt;a&gt;...&lt;b&gt;"),
        ("1...2...3", "is not a comparison"),
    ],
)
def test_compare__unknown_version_or_alias__404_with_message(admin_client, history, spec, message):
    response = admin_client.get(compare_url(spec))

    assert response.status_code == 404
    assert message in response.content.decode()


def test_compare__not_deployed_in_environment__404(admin_client, agent, production):
    factories.create_version(agent)

    response = admin_client.get(compare_url("active@production...1"))

    assert response.status_code == 404
    assert "support-bot is not deployed in production" in response.content.decode()


def test_compare__unknown_agent__404(admin_client, history):
    response = admin_client.get(compare_url("1...2", slug="no-such-bot"))

    assert response.status_code == 404
    assert "there is no agent &#x27;no-such-bot&#x27;" in response.content.decode()


def test_compare__script_everywhere__escaped(admin_client, agent):
    # Given markup in a prompt, a change description and guardrail values
    factories.create_version(agent, system_prompt=f"Hello\n{SCRIPT} first\n")
    factories.create_version(
        agent,
        system_prompt=f"Hello\n{SCRIPT} second\n{SCRIPT}\n",
        change_description=SCRIPT,
        guardrails={SCRIPT: [SCRIPT]},
    )

    response = admin_client.get(compare_url("1...2"))

    content = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in content
    assert "&lt;script&gt;alert(&quot;prompt&quot;)&lt;/script&gt;" in content
    assert "&quot;&lt;script&gt;alert(\\&quot;prompt\\&quot;)&lt;/script&gt;&quot;" in content


def test_compare__long_prompt__unchanged_lines_folded_in_details(admin_client, agent):
    lines = "".join(f"Rule {i}: keep it.\n" for i in range(60))
    factories.create_version(agent, system_prompt=lines + "Old ending.\n")
    factories.create_version(agent, system_prompt=lines + "New ending.\n")

    content = admin_client.get(compare_url("1...2")).content.decode()

    assert '<details class="ac-diff-fold">' in content
    assert f"57 unchanged lines (v1 1{EN_DASH}57, v2 1{EN_DASH}57)" in content
    assert "agentconfig/diff.js" in content


def test_compare__page_queries__do_not_grow_with_the_prompt(
    admin_client, history, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        admin_client.get(compare_url("active@production...latest"))


# --- links to the compare page ---------------------------------------------------------


def test_version_page__v2__links_changes_from_previous(admin_client, history):
    response = admin_client.get(
        reverse("admin:versions_agentversion_change", args=[history["v2"].pk])
    )

    content = response.content.decode()
    assert f'href="{compare_url("previous...2")}">Changes from previous</a>' in content


def test_version_page__v1__no_changes_from_previous(admin_client, history):
    response = admin_client.get(
        reverse("admin:versions_agentversion_change", args=[history["v1"].pk])
    )

    assert response.status_code == 200
    assert "Changes from previous" not in response.content.decode()


def test_version_list__changes_column__links_each_version_to_its_previous(admin_client, history):
    content = admin_client.get(reverse("admin:versions_agentversion_changelist")).content.decode()

    assert f'<a href="{compare_url("previous...3")}">v2 → v3</a>' in content
    assert "first version" in content


def test_version_list__filtered_by_agent__compare_form_with_two_selects(admin_client, history):
    response = admin_client.get(
        reverse("admin:versions_agentversion_changelist"),
        {"agent__id__exact": history["v1"].agent_id},
    )

    content = response.content.decode()
    pick_url = reverse("admin:versions_agentversion_compare_pick", args=["support-bot"])
    assert f'<form class="module ac-compare-picker" method="get" action="{pick_url}">' in content
    assert '<select id="ac-compare-old" name="old">' in content
    assert '<select id="ac-compare-new" name="new">' in content
    assert '<option value="2" selected>v2' in content  # old: the one before the newest
    assert '<option value="3" selected>v3' in content  # new: the newest
    assert '<option value="active@production">active@production (v2)</option>' in content


def test_version_list__not_filtered__no_compare_form(admin_client, history):
    content = admin_client.get(reverse("admin:versions_agentversion_changelist")).content.decode()

    assert "ac-compare-picker" not in content


def test_compare_pick__two_versions__redirects_to_the_git_style_url(admin_client, history):
    pick_url = reverse("admin:versions_agentversion_compare_pick", args=["support-bot"])

    response = admin_client.get(pick_url, {"old": "active@production", "new": "3"})

    assert response.status_code == 302
    assert response["Location"] == compare_url("active@production...3")
    assert admin_client.get(response["Location"]).status_code == 200


def test_compare_pick__missing_side__404_asking_for_two(admin_client, history):
    pick_url = reverse("admin:versions_agentversion_compare_pick", args=["support-bot"])

    response = admin_client.get(pick_url, {"old": "1"})

    assert response.status_code == 404
    assert "Choose two versions to compare." in response.content.decode()


def test_compare_pick__without_permission__403(staff_client, history):
    pick_url = reverse("admin:versions_agentversion_compare_pick", args=["support-bot"])

    assert staff_client.get(pick_url, {"old": "1", "new": "2"}).status_code == 403


# --- the include other pages use ---------------------------------------------------------


def test_version_diff_include__two_versions__summary_rows_and_link_to_full_page(history):
    context = build_diff_context(history["v1"], history["v2"])

    html = render_to_string("admin/agentconfig/includes/version_diff.html", context)

    assert "What changes: v1 → v2" in html
    assert f'href="{compare_url("1...2")}"' in html
    assert f"{MINUS}1 paragraph" in html
    assert 'class="ac-diff-row ac-row-delete"' in html


def test_version_diff_include__first_deploy__everything_added(history):
    context = build_diff_context(None, history["v1"])

    html = render_to_string(
        "admin/agentconfig/includes/version_diff.html", {**context, "diff_title": "Deploy"}
    )

    assert "Deploy: nothing → v1" in html
    assert "ac-row-insert" in html
    assert "ac-row-delete" not in html
    assert "open the full comparison" not in html
