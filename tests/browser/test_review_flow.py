"""The review workflow in a real browser, as real users signing in through the login page.

An editor edits the prompt and saves a new version, then asks for it in production; they
cannot approve it themselves. A reviewer reads the diff and approves with a comment; a
deployer applies it; the runtime endpoint serves the new prompt. Then a rollback from the
rollback screen restores the old prompt on the endpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from deployments.models import DeploymentRequest
from tests import factories
from tests.browser import pages
from tests.factories import member

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery"  # tests.factories.UserFactory's
OLD_PARAGRAPH = "Billing questions: look the invoice up before you answer; never guess an amount."
NEW_PARAGRAPH = (
    "Billing questions: look the invoice up before you answer; never guess an amount. "
    "Refunds under 50 EUR you may promise; larger ones go to a human."
)
PROMPT = "You are Ada, the support assistant of Acme Cloud.\n\n{billing}\n\nBe brief and kind.\n"


@pytest.fixture
def world(live_server: Any) -> dict[str, Any]:
    """support-bot v1 live in production (which requires 1 approval), a key, three people."""
    production = factories.environment("production")
    factories.environment("staging")
    agent = factories.create_agent(slug="support-bot", name="Support bot")
    v1 = factories.create_version(
        agent,
        system_prompt=PROMPT.format(billing=OLD_PARAGRAPH),
        change_description="First version.",
    )
    factories.deploy(v1, production)
    _, key = factories.create_api_key(production)
    return {
        "base": live_server.url,
        "agent": agent,
        "key": key,
        "editor": member("pm", "Editors"),
        "reviewer": member("reviewer", "Reviewers"),
        "deployer": member("operator", "Deployers"),
    }


def sign_in(browser: Browser, base: str, username: str) -> Page:
    return pages.sign_in(browser, base, username, PASSWORD)


def served_prompt(page: Page, world: dict[str, Any]) -> str:
    response = page.request.get(
        f"{world['base']}/api/v1/agents/support-bot/config",
        headers={"Authorization": f"Bearer {world['key']}"},
    )
    assert response.ok, response.text()
    return response.json()["config"]["system_prompt"]


def test_review_flow__edit_request_approve_apply_rollback__endpoint_follows(
    browser: Browser, world: dict[str, Any], screenshots: Path
) -> None:
    base, agent = world["base"], world["agent"]
    agent_url = f"{base}/admin/agentconfig/agent/{agent.pk}/change/"

    # Given an editor who edits the prompt in the browser and saves v2
    editor = sign_in(browser, base, "pm")
    editor.goto(agent_url)
    editor.get_by_role("link", name="New version").click()
    editor.fill("#id_system_prompt", PROMPT.format(billing=NEW_PARAGRAPH))
    editor.fill("#id_change_description", "Promise small refunds again.")
    editor.get_by_role("button", name="Save as v2").click()
    expect(editor.locator(".messagelist")).to_contain_text("Created support-bot v2")

    # And who asks for it in production (which requires an approval)
    production_row = editor.locator("#environments tr", has_text="production")
    expect(production_row).to_contain_text("requires 1 approval")
    production_row.get_by_role("link", name="Request deployment…").click()
    editor.select_option("#id_version", str(agent.versions.get(version_number=2).pk))
    editor.fill("#id_reason", "Customers get no refund answers since v1.")
    editor.get_by_role("button", name="Review request…").click()
    expect(editor.locator(".ac-diff")).to_contain_text("Refunds under 50 EUR")
    editor.get_by_role("button", name=re.compile("Open the request")).click()
    expect(editor.locator(".messagelist")).to_contain_text("needs 1 approval")
    request_url = editor.url

    # Then the editor cannot approve their own request: there is no approve control
    expect(editor.locator("#review_form")).to_have_count(0)
    expect(editor.get_by_role("button", name="Approve")).to_have_count(0)

    # When a reviewer opens the request, reads the diff and approves with a comment
    reviewer = sign_in(browser, base, "reviewer")
    reviewer.goto(request_url)
    diff = reviewer.locator(".ac-diff")
    expect(diff).to_contain_text("v1 → v2")
    expect(diff.locator(".ac-row-change, .ac-row-insert, .ac-row-replace").first).to_be_visible()
    expect(diff).to_contain_text("Refunds under 50 EUR you may promise")
    reviewer.set_viewport_size({"width": 1280, "height": 1100})
    reviewer.screenshot(path=str(screenshots / "review-request.png"), full_page=False)
    reviewer.fill("#id_comment", "Read the diff: the refund rule is back, nothing else changed.")
    reviewer.get_by_role("button", name="Approve").click()
    expect(reviewer.locator(".messagelist")).to_contain_text("You approved request")
    expect(reviewer.locator(".ac-review-counts")).to_contain_text("counts")
    expect(reviewer.locator("#apply_form")).to_have_count(0)  # reviewers do not apply

    # And a deployer applies it
    deployer = sign_in(browser, base, "operator")
    deployer.goto(request_url)
    deployer.get_by_role("button", name=re.compile("Apply: deploy v2 to production")).click()
    expect(deployer.locator(".messagelist")).to_contain_text("production now serves")

    # Then the runtime endpoint serves the new prompt
    assert NEW_PARAGRAPH in served_prompt(deployer, world)
    assert DeploymentRequest.objects.get().status == "applied"

    # When the deployer rolls back from the rollback screen: one page, previous preselected
    deployer.goto(agent_url)
    deployer.locator("#environments tr", has_text="production").get_by_role(
        "link", name="Roll back…"
    ).click()
    expect(deployer.locator("#rollback_to")).to_have_value(
        str(agent.versions.get(version_number=1).pk)
    )
    expect(deployer.locator(".ac-diff")).to_contain_text("What the rollback changes: v2 → v1")
    deployer.fill("#id_reason", "Refund promise confuses the billing team; back to v1.")
    deployer.screenshot(path=str(screenshots / "rollback.png"), full_page=True)
    deployer.get_by_role("button", name="Roll back production from v2 to v1").click()
    expect(deployer.locator(".messagelist")).to_contain_text("back to v1 (was v2)")

    # Then the endpoint serves the old prompt again
    assert served_prompt(deployer, world) == PROMPT.format(billing=OLD_PARAGRAPH)
