"""versions.secrets: credential-looking tokens are found with their place; prose is not."""

import pytest

from versions.secrets import scan_config, scan_json, scan_text

SAMPLES = {
    "an OpenAI API key": "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
    "an Anthropic API key": "sk-ant-api03-" + "x" * 40,
    "an AWS access key id": "AKIAIOSFODNN7EXAMPLE",
    "a GitHub token": "ghp_" + "a" * 36,
    "a Slack token": "xoxb-1234567890-abcdefghij",
    "a Stripe secret key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "a Google API key": "AIza" + "SyA-1234567890abcdefghijklmnopqrstu",
    "a Hugging Face token": "hf_" + "abcdefghijklmnopqrstuvwxyzABCDEF",
    "a private key block": "-----BEGIN RSA PRIVATE KEY-----",
    "a bearer token": "Bearer " + "abcDEF123456ghiJKL789012",
    "a JSON Web Token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    "a password in a URL": "postgres://admin:hunter2@db.internal/prod",
}


@pytest.mark.parametrize(("kind", "token"), SAMPLES.items())
def test_scan_text__credential__found_with_kind_and_position(kind, token):
    text = f"You are a bot.\nUse the key   {token} when calling."

    findings = scan_text(text, "system_prompt")

    assert [f.kind for f in findings] == [kind]
    assert findings[0].location == "system_prompt, line 2, column 15"
    assert token not in findings[0].message()  # never echo the whole secret


@pytest.mark.parametrize(
    "prose",
    [
        "Never ask the customer for their API key or password.",
        "Explain that a Bearer token goes in the Authorization header.",
        "Tasks: ask-questions, sk-learn is a library, use https://example.com/docs",
        "The private key must stay on the user's device.",
    ],
)
def test_scan_text__ordinary_prose__nothing_found(prose):
    assert scan_text(prose, "system_prompt") == []


def test_scan_json__secret_in_nested_value__reports_json_path():
    findings = scan_json({"webhook": {"headers": ["Bearer " + "z" * 30]}}, "guardrails")

    assert findings[0].location.startswith("guardrails.webhook.headers[0]")


def test_scan_config__prompt_and_guardrails__both_reported():
    config = {"system_prompt": "AKIAIOSFODNN7EXAMPLE", "guardrails": {"k": "ghp_" + "b" * 36}}

    assert {f.field for f in scan_config(config)} == {"system_prompt", "guardrails"}
