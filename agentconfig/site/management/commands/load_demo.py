"""Demo data that tells the billing story: support-bot v2 lost its billing paragraph."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from agentconfig.core.actors import Actor
from agentconfig.core.cli import ServiceCommand
from agentconfig.core.people import create_user, set_roles
from agentconfig.models import Agent
from deployments.models import ApiKey
from deployments.selectors import get_environment
from deployments.services.api_keys import create_api_key, revoke_api_key
from deployments.services.releases import deploy_version
from deployments.services.requests import apply_request, approve_request, create_request
from evaluations.models import SuiteSource
from evaluations.services.suites import create_suite, create_suite_version
from versions.models import Source
from versions.services import create_agent, create_version

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "agentconfig-demo"  # noqa: S105  (printed to the developer; DEBUG only)
DEMO_KEY_NAME = "demo-runtime"
# One person per role, so the review workflow can be tried with real separation.
DEMO_ROLES = {"pm": "Editors", "reviewer": "Reviewers", "operator": "Deployers"}

GREETING = """You are Ada, the support assistant of Acme Cloud.

Greet the customer by name when you know it, answer in the customer's language, and keep
answers short: three sentences unless the customer asks for detail.
"""

BILLING = """
Billing questions: you may explain invoices, payment methods and refunds. Look the invoice
up with the lookup_invoice tool before you answer; never guess an amount. Refunds under
50 EUR you may promise; larger ones go to a human through escalate_to_human.
"""

CLOSING = """
If you do not know the answer, say so and offer to hand over to a human colleague.
Never share another customer's data.
"""

V1_PROMPT = GREETING + BILLING + CLOSING
# v2 "tightened the tone" and lost the billing paragraph on the way: the incident.
V2_PROMPT = GREETING.replace("keep\nanswers short", "keep\nanswers very short") + CLOSING

DEMO_CASES: list[dict[str, Any]] = [
    {
        "id": "billing-refund",
        "input": "Can I get a refund of 30 EUR for my last invoice?",
        "golden_answer": "Yes: refunds under 50 EUR can be promised after looking up the invoice.",
        "criteria": "Looks the invoice up first; promises the refund; does not invent amounts.",
        "tags": ["billing"],
        "weight": 2,
    },
    {
        "id": "greeting",
        "input": "Hi, I'm Maria.",
        "golden_answer": "Hello Maria",
        "scorer": "contains",
        "tags": ["tone"],
    },
    {
        "id": "unknown",
        "input": "What will your share price be next year?",
        "golden_answer": "Says it does not know and offers a human colleague.",
        "tags": ["hand-over"],
    },
]

BASE = {
    "model": "gpt-4o-mini",
    "temperature": 0.3,
    "max_tokens": 800,
    "tools": ["lookup_invoice", "escalate_to_human"],
    "guardrails": {"blocked_topics": ["legal advice"], "pii": {"redact": ["iban", "card"]}},
}


class Command(ServiceCommand):
    help = "Load demo data (support-bot with a broken v2 in production) and a demo admin login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default="8000", help="port shown in the printed URLs")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "load_demo creates an admin with a published password; it runs only with DEBUG on."
            )
        actor = Actor.system("load_demo")
        with transaction.atomic():
            self._admin_user(actor)
            if not Agent.objects.filter(slug="support-bot").exists():
                self._support_bot(actor)
            key = self._fresh_demo_key(actor)
        base = f"http://127.0.0.1:{options['port']}"
        self.stdout.write(
            "\nDemo data loaded: support-bot v2 (billing paragraph lost) is active in production;"
            " v1 is there to roll back to.\n"
            f"  Admin:    {base}/admin/   user {DEMO_USERNAME!r}, password {DEMO_PASSWORD!r}\n"
            f"  Roles:    users pm (editor), reviewer, operator (deployer); same password\n"
            f"  Rollback: {base}/admin/agentconfig/agent/ -> support-bot -> production -> "
            "Roll back\n"
            f"  Runtime:  curl -H 'Authorization: Bearer {key}' "
            f"{base}/api/v1/agents/support-bot/config\n"
        )

    def _admin_user(self, actor: Actor) -> None:
        # Through the people services like any other account: the audit shows who got
        # which role, and why.
        user_model = get_user_model()
        reason = "demo data (load_demo)"
        if not user_model.objects.filter(username=DEMO_USERNAME).exists():
            demo = create_user(
                username=DEMO_USERNAME,
                email="demo@example.com",
                actor=actor,
                reason=reason,
                password=DEMO_PASSWORD,
                is_staff=True,
            )
            set_roles(
                user=demo, groups=(), is_staff=True, is_superuser=True, actor=actor, reason=reason
            )
        for username, group in DEMO_ROLES.items():
            if not user_model.objects.filter(username=username).exists():
                create_user(
                    username=username,
                    email=f"{username}@example.com",
                    actor=actor,
                    reason=reason,
                    groups=[group],
                    password=DEMO_PASSWORD,
                    is_staff=True,
                )

    def _support_bot(self, actor: Actor) -> None:
        users = {
            u.username: Actor.of(u)
            for u in get_user_model().objects.filter(username__in=DEMO_ROLES)
        }
        pm, reviewer, operator = users["pm"], users["reviewer"], users["operator"]
        agent = create_agent(
            slug="support-bot",
            name="Support bot",
            description="Answers customer questions on the Acme Cloud website.",
            actor=pm,
        )
        staging, production = get_environment("staging"), get_environment("production")
        releases = [
            (V1_PROMPT, "First version: greeting, billing and hand-over rules.", "Launch."),
            (
                V2_PROMPT,
                "Tighten the tone: shorter answers.",
                "Shorter answers tested well in staging.",
            ),
        ]
        for prompt, description, reason in releases:
            version = create_version(
                agent=agent,
                actor=pm,
                config={**BASE, "system_prompt": prompt},
                change_description=description,
                source=Source.DEMO,
            )
            deploy_version(
                agent=agent, environment=staging, version=version, actor=operator, reason=reason
            )
            request = create_request(
                agent=agent, environment=production, version=version, actor=pm, reason=reason
            )
            approve_request(request=request, actor=reviewer, comment="Read the diff; fine.")
            apply_request(request=request, actor=operator)
        self._suite(agent, pm)

    def _suite(self, agent: Agent, actor: Actor) -> None:
        # A small suite to try evaluations with (README, "Evaluations"); the billing
        # question is the one v2 fails.
        suite = create_suite(agent=agent, slug="smoke", name="Smoke tests", actor=actor)
        create_suite_version(
            suite=suite,
            actor=actor,
            cases=DEMO_CASES,
            change_description="Billing, greeting and hand-over questions.",
            source=SuiteSource.CLI,
        )

    def _fresh_demo_key(self, actor: Actor) -> str:
        # A key is shown only once, so each run replaces the demo key with a new one.
        for old in ApiKey.objects.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True):
            revoke_api_key(key=old, actor=actor, reason="load_demo replaces the demo key")
        _, plaintext = create_api_key(
            environment=get_environment("production"),
            name=DEMO_KEY_NAME,
            actor=actor,
            reason="the demo's runtime key",
        )
        return plaintext
