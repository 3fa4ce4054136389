"""A flag change that reaches production, in a real browser, as the demo's users.

On the demo data (load_demo: support-bot live in production, which requires 1 approval),
an editor creates a flag and gates support-bot's escalate_to_human behind it. That would
take the tool from every production user, so saving opens a change request instead; the
runtime endpoint keeps serving the tool. A reviewer approves, a deployer applies, and the
endpoint stops serving it. Then the deployer pulls the kill switch on another flag that
is on in production: no request, the endpoint follows at once.
"""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from playwright.sync_api import Browser, Page, expect

from agentconfig.core.actors import Actor
from agentconfig.models import Agent
from agentconfig.site.management.commands.load_demo import DEMO_PASSWORD
from deployments.models import DeploymentRequest
from deployments.services.api_keys import create_api_key
from flags.models import Flag, ToolGate
from flags.services.flags import create_flag, set_flag_enabled
from tests import factories
from tests.browser import pages
from tests.factories import ensure_roles

pytestmark = pytest.mark.django_db(transaction=True)

NEW_FLAG = "human-handoff"
LIVE_FLAG = "refund-promises"  # on in production from the setup; the kill switch's target
TOOL = "escalate_to_human"
SAMPLE_USER = "user-42"
# Server processes read the change feed every AGENTCONFIG_REFRESH_INTERVAL (0.25 s).
PROPAGATION_SECONDS = 2.0


@pytest.fixture
def demo(live_server: Any) -> dict[str, Any]:
    """The demo data, a production key, and a flag that is on in production."""
    # A transactional test before this one may have flushed the migrations' rows.
    ensure_roles()
    factories.environment("staging")
    production = factories.environment("production")
    with override_settings(DEBUG=True):  # load_demo refuses to run without it
        call_command("load_demo", stdout=io.StringIO())
    setup = Actor.system("setup")
    _, key = create_api_key(
        environment=production,
        name="browser-test",
        actor=setup,
        reason="browser test of flag change requests",
    )
    live = create_flag(key=LIVE_FLAG, kind="boolean", actor=setup, description="Set up on.")
    set_flag_enabled(
        flag=live, environment=production, enabled=True, actor=setup, break_glass="test setup"
    )
    return {"base": live_server.url, "key": key, "agent": Agent.objects.get(slug="support-bot")}


def sign_in(browser: Browser, base: str, username: str) -> Page:
    return pages.sign_in(browser, base, username, DEMO_PASSWORD)


def served(demo: dict[str, Any]) -> dict[str, Any]:
    """Production's answer for the sample user, as a runtime gets it."""
    # The live server's own http:// URL: no file: or custom scheme can reach urlopen.
    request = urllib.request.Request(  # noqa: S310
        f"{demo['base']}/api/v1/agents/support-bot/config?user_id={SAMPLE_USER}",
        headers={"Authorization": f"Bearer {demo['key']}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def eventually(demo: dict[str, Any], check: Callable[[dict[str, Any]], bool]) -> float:
    """Seconds until production's answer passes `check`; fails after PROPAGATION_SECONDS."""
    start = time.monotonic()
    while True:
        answer = served(demo)
        elapsed = time.monotonic() - start
        if check(answer):
            return elapsed
        if elapsed > PROPAGATION_SECONDS:
            pytest.fail(f"after {elapsed:.2f} s production still answers {answer}")
        time.sleep(0.05)


def test_flag_change_request__gate_a_live_tool__reviewed_applied_then_kill_switch_at_once(
    browser: Browser, demo: dict[str, Any], screenshots: Path
) -> None:
    base, agent = demo["base"], demo["agent"]
    assert TOOL in served(demo)["config"]["tools"]
    assert served(demo)["flags"][LIVE_FLAG]["value"] is True

    # Given an editor who creates a boolean flag on the flag add page
    editor = sign_in(browser, base, "pm")
    editor.goto(f"{base}/admin/flags/flag/add/")
    editor.fill("#id_key", NEW_FLAG)
    expect(editor.locator("#id_kind")).to_have_value("boolean")
    editor.fill("#id_description", "Hand-over to a human colleague.")
    editor.click("input[name=_save]")
    expect(editor.locator(".messagelist")).to_contain_text(f"Created {NEW_FLAG}")

    # And who gates support-bot's escalate_to_human behind it, first without a reason
    editor.locator("#tool-gates").get_by_role("link", name="Gate a tool…").click()
    editor.select_option("#id_agent", str(agent.pk))
    editor.fill("#id_tool_name", TOOL)
    editor.select_option("#id_flag", label=NEW_FLAG)
    editor.click("input[name=_save]")
    expect(editor.locator(".field-reason .errorlist")).to_contain_text(
        "production needs an approved change request"
    )
    assert not ToolGate.objects.exists()

    # When they give a reason and save again
    editor.fill("#id_reason", "Hand-over only where the new flag turns it on.")
    editor.click("input[name=_save]")

    # Then a change request is open, saying what production's users would lose
    expect(editor).to_have_url(re.compile(r"/admin/deployments/deploymentrequest/\d+/change/$"))
    change_request = DeploymentRequest.objects.get(kind="flag")
    expect(editor.locator(".messagelist")).to_contain_text(
        f"change request #{change_request.pk} is open"
    )
    lines = editor.locator("#change-lines")
    expect(lines).to_contain_text(f"Gate {TOOL} of support-bot behind {NEW_FLAG}.")
    expect(lines).to_contain_text(
        f"production (support-bot): 10,000 of 10,000 users lose the tool {TOOL}."
    )
    expect(editor.locator("#review_form")).to_have_count(0)  # never their own
    request_url = editor.url

    # And production's runtimes are unchanged: the tool is still served
    assert not ToolGate.objects.exists()
    assert TOOL in served(demo)["config"]["tools"]

    # When a reviewer opens the request and approves it with a comment
    reviewer = sign_in(browser, base, "reviewer")
    reviewer.goto(request_url)
    expect(reviewer.locator("#change-lines")).to_contain_text("lose the tool")
    reviewer.fill("#id_comment", "Read it: nobody gets the hand-over until the flag is on.")
    reviewer.set_viewport_size({"width": 1280, "height": 720})
    reviewer.screenshot(path=str(screenshots / "flag-change-request.png"), full_page=True)
    reviewer.get_by_role("button", name="Approve").click()
    expect(reviewer.locator(".messagelist")).to_contain_text(
        f"You approved request #{change_request.pk}"
    )
    expect(reviewer.locator(".ac-meter")).to_contain_text("1 of 1")
    expect(reviewer.locator("#apply_form")).to_have_count(0)  # reviewers do not apply
    assert TOOL in served(demo)["config"]["tools"]

    # And a deployer applies it
    deployer = sign_in(browser, base, "operator")
    deployer.goto(request_url)
    deployer.get_by_role("button", name=f"Apply request #{change_request.pk}").click()
    expect(deployer.locator(".messagelist")).to_contain_text(
        f"Applied request #{change_request.pk}"
    )

    # Then the endpoint no longer serves the tool to the sample user
    eventually(demo, lambda answer: TOOL not in answer["config"]["tools"])
    assert ToolGate.objects.get().flag.key == NEW_FLAG

    # When the deployer pulls the kill switch on a flag that is on in production
    live = Flag.objects.get(key=LIVE_FLAG)
    deployer.goto(f"{base}/admin/flags/flag/{live.pk}/change/")
    deployer.locator("#environments tr", has_text="production").get_by_role(
        "link", name="Kill switch…"
    ).click()
    deployer.fill("#id_reason", "Refund promises are wrong since this morning.")
    deployer.get_by_role("button", name=f"Yes, turn {LIVE_FLAG} off in production").click()
    expect(deployer.locator(".messagelist")).to_contain_text(
        f"Kill switch: {LIVE_FLAG} is off in production"
    )

    # Then it takes effect at once, without a request
    eventually(demo, lambda answer: answer["flags"][LIVE_FLAG]["value"] is False)
    assert DeploymentRequest.objects.filter(kind="flag").count() == 1
