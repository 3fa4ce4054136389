"""The admin under its Content-Security-Policy, in a real browser: nothing is refused.

A superuser signs in through the login page and opens the main pages (the agent page with
a running canary's chart, the timeline, a diff, the rollback screen, lists, forms, the
flag pages); the scripts that enhance them (diff folding, auto-submitting selects, the
admin's own) run. Chromium reports every blocked script, style or frame in the console and
as a `securitypolicyviolation` event: there must be none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests import factories
from tests.deployments.canary_helpers import start
from tests.flags.helpers import make_flag

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery"  # tests.factories.UserFactory's
PROMPT = "You are Ada.\n\n" + "".join(f"Rule {n}: be kind.\n" for n in range(40))
# Playwright adds this before any page script and outside the page's CSP.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


@pytest.fixture
def world(live_server: Any) -> dict[str, Any]:
    """support-bot live in both environments, a canary running in staging, a key, a flag."""
    staging, production = factories.environment("staging"), factories.environment("production")
    agent = factories.create_agent(slug="support-bot", name="Support bot")
    v1 = factories.create_version(agent, system_prompt=PROMPT, change_description="First.")
    v2 = factories.create_version(
        agent,
        system_prompt=PROMPT.replace("Rule 20: be kind.", "Rule 20: be brief."),
        change_description="Shorter answers.",
    )
    factories.deploy(v1, production)
    factories.deploy(v1, staging)
    start(v2, staging)
    factories.create_api_key(production)
    flag = make_flag("web-search", agent=agent)
    factories.UserFactory(username="root", is_staff=True, is_superuser=True)
    return {"base": live_server.url, "agent": agent, "flag": flag}


def watched_page(browser: Browser, messages: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(RECORD_VIOLATIONS)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            messages.append(f"{page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: messages.append(f"{page.url}: {error}"))
    return page


def violations(page: Page) -> list[str]:
    return [f"{page.url}: {v}" for v in page.evaluate("window.__cspViolations || []")]


def test_admin_pages__strict_csp__no_violation_and_enhancements_still_work(
    browser: Browser, world: dict[str, Any], screenshots: Path
) -> None:
    base, agent, flag = world["base"], world["agent"], world["flag"]
    messages: list[str] = []
    page = watched_page(browser, messages)
    seen: list[str] = []

    # Given: signed in through the login page
    page.goto(f"{base}/admin/login/")
    seen += violations(page)
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("root")

    # When: the main pages
    pages = [
        reverse("admin:index"),
        reverse("admin:agentconfig_agent_changelist"),
        reverse("admin:agentconfig_agent_change", args=[agent.pk]),
        reverse("admin:agentconfig_agent_timeline", args=[agent.pk]),
        reverse("admin:agentconfig_agent_history", args=[agent.pk]),
        reverse("admin:versions_agentversion_changelist") + f"?agent__id__exact={agent.pk}",
        reverse("admin:deployments_releaselogentry_changelist"),
        reverse("admin:deployments_apikey_changelist"),
        reverse("admin:deployments_apikey_add"),
        reverse("admin:deployments_environment_changelist"),
        reverse("admin:flags_flag_changelist"),
        reverse("admin:flags_flag_change", args=[flag.pk]),
        reverse("admin:auth_user_add"),
        reverse("admin:evaluations_evaluationsuite_changelist"),
    ]
    for url in pages:
        response = page.goto(base + url)
        assert response is not None and response.ok, url
        page.wait_for_load_state("load")
        seen += violations(page)
    page.screenshot(path=str(screenshots / "csp-agent-list.png"))

    # The diff's fold toggle (static/agentconfig/diff.js) runs
    page.goto(base + reverse("admin:versions_agentversion_compare", args=["support-bot", "1...2"]))
    toggle = page.locator(".ac-diff-toggle").first
    expect(toggle).to_be_visible()
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    seen += violations(page)

    # The rollback screen's target select submits itself (static/agentconfig/autosubmit.js)
    page.goto(base + f"/admin/agentconfig/agent/{agent.pk}/rollback/staging/")
    seen += violations(page)
    page.screenshot(path=str(screenshots / "csp-rollback.png"))

    # The list's "select all" checkbox (the admin's actions.js) runs
    page.goto(base + reverse("admin:deployments_apikey_changelist"))
    page.check("#action-toggle")
    expect(page.locator("input.action-select").first).to_be_checked()
    seen += violations(page)

    # Then
    csp_messages = [m for m in messages if "Content Security Policy" in m]
    assert seen == []
    assert csp_messages == []
