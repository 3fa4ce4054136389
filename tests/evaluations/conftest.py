"""Fixtures of the evaluation tests: a local Chat Completions server and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.evaluations.chat_server import JUDGE_MODEL, ChatServer, ScriptedLLM


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm(chat_server: ChatServer) -> ScriptedLLM:
    """The scripted model and judge behind chat_server."""
    assert isinstance(chat_server.handler, ScriptedLLM)
    return chat_server.handler


@pytest.fixture
def eval_settings(settings: Any, chat_server: ChatServer) -> Any:
    """Settings that point evaluation runs at the local server, with short waits."""
    settings.EVAL_API_BASE_URL = chat_server.base_url
    # The local model server of development: plain http, on this machine, this port only.
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = [chat_server.host_port]
    settings.EVAL_API_KEY = "test-key"
    settings.EVAL_JUDGE_MODEL = JUDGE_MODEL
    settings.EVAL_JUDGE_PROMPT = ""
    settings.EVAL_JUDGE_RESPONSE_FORMAT = "json_object"
    settings.EVAL_CONCURRENCY = 2
    settings.EVAL_TIMEOUT_SECONDS = 5.0
    settings.EVAL_MAX_RETRIES = 2
    return settings


@pytest.fixture
def no_endpoint(settings: Any) -> Any:
    settings.EVAL_API_BASE_URL = ""
    settings.EVAL_API_KEY = ""
    return settings
