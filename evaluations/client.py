"""One Chat Completions call to an OpenAI-compatible endpoint, with its cost. No Django models.

Built on the `openai` package (base_url, timeout, max_retries): it retries timeouts,
connection errors, 429 and 5xx with exponential backoff and jitter, and honours the
server's Retry-After. Works with OpenAI, Azure OpenAI's v1 API, vLLM, Ollama and the
llama.cpp server.

Invariants:
- `complete` either returns the reply's text with tokens, latency and attempts, or raises
  ChatError with one line a person can act on; it never raises anything else.
- A ChatError's `message` is our own words (status, attempts, where); whatever the remote
  server said (an error body, an exception's text) is only in `detail`, at most
  MAX_DETAIL_CHARS, for the people who may see the endpoint's settings.
- Every call goes through the httpx2 client the caller passes, agentconfig.core.outbound's
  safe_client in the worker: its refusals (an address that is not public, a response too
  large) end the call at once, without retries.
- The API key is only held in memory for the client; it is never part of an error.
- A ChatClient may be shared by threads (the underlying HTTP client is thread-safe).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from agentconfig.core.outbound import OutboundRefused

if TYPE_CHECKING:
    import httpx2
    from openai.types.chat import ChatCompletionMessageParam

# Local servers (Ollama, llama.cpp, vLLM without --api-key) ignore the key, but the
# client insists on one; it is sent only when none is configured.
NO_KEY = "not-needed"
MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str
    timeout: float
    max_retries: int


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int
    attempts: int


class ChatError(Exception):
    """A call failed after its retries; the message says what happened, `detail` what the
    server said."""

    def __init__(self, message: str, latency_ms: int = 0, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.latency_ms = latency_ms
        self.detail = _short(detail)


class ChatClient:
    def __init__(self, endpoint: Endpoint, *, http_client: httpx2.Client) -> None:
        # Imported here: the package takes half a second to import, and only workers (and
        # `evaluate --wait`) call models; web processes that import this module never do.
        import openai

        self._openai = openai
        self.endpoint = endpoint
        self._client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or NO_KEY,
            # The client's own timeouts (a short connect timeout among them).
            timeout=http_client.timeout,
            max_retries=endpoint.max_retries,
            http_client=http_client,
        )

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def complete(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, str]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        """Send one chat completion request (retried as configured); the reply's text."""
        options: dict[str, Any] = {}
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        if response_format is not None:
            options["response_format"] = response_format
        openai = self._openai
        started = time.monotonic()
        try:
            raw = self._client.chat.completions.with_raw_response.create(
                model=model,
                # Each message is a role and its content, as the API takes them.
                messages=cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages]),
                **options,
            )
            reply = raw.parse()
            choice = reply.choices[0] if reply.choices else None
            text = choice.message.content if choice is not None else None
        except OutboundRefused as exc:
            raise ChatError(f"refused: {exc.message}", _ms_since(started)) from None
        except openai.APITimeoutError:
            raise ChatError(
                f"no reply within {self.endpoint.timeout:g} s "
                f"({self._tries()}) from {self.endpoint.base_url}",
                _ms_since(started),
            ) from None
        except openai.APIConnectionError as exc:
            # The cause's text can quote the server (a protocol error shows its first bytes).
            cause = exc.__cause__ or exc
            raise ChatError(
                f"could not connect to {self.endpoint.base_url} ({self._tries()})",
                _ms_since(started),
                detail=str(cause),
            ) from None
        except openai.APIStatusError as exc:
            retried = exc.status_code == 429 or exc.status_code >= 500
            tries = f" ({self._tries()})" if retried else ""
            where = self.endpoint.base_url
            raise ChatError(
                f"HTTP {exc.status_code}{tries} from {where}: the endpoint answered with an error",
                _ms_since(started),
                detail=exc.message,
            ) from None
        except Exception as exc:  # a reply the client could not read: malformed JSON, no choices
            raise ChatError(
                f"unreadable reply from {self.endpoint.base_url}",
                _ms_since(started),
                detail=str(exc),
            ) from None
        latency_ms = _ms_since(started)
        if text is None:
            reason = choice.finish_reason if choice is not None else "no choices"
            raise ChatError(
                f"the reply has no text (finish_reason: {_short(str(reason), 40)})", latency_ms
            )
        usage = reply.usage
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=latency_ms,
            attempts=raw.retries_taken + 1,
        )

    def _tries(self) -> str:
        tries = self.endpoint.max_retries + 1
        return "1 attempt" if tries == 1 else f"{tries} attempts"


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _short(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else f"{line[: limit - 1]}…"
