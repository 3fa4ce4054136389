"""A Chat Completions server on 127.0.0.1, in a thread, with scripted replies (tests only).

It speaks the wire format of POST /v1/chat/completions: JSON in, a chat.completion
object (or an error object with the scripted status) out. It records every request,
counts requests in flight to observe concurrency, and sleeps on an event so that
stopping it never waits for a scripted delay.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JUDGE_MODEL = "judge-model"


@dataclass
class Reply:
    content: str | None = "ok"
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as the body instead of a chat.completion
    prompt_tokens: int = 11
    completion_tokens: int = 7


def error(status: int, message: str = "scripted error", **headers: str) -> Reply:
    """An error reply; retry-after-ms keeps the client's backoff short."""
    return Reply(
        status=status,
        raw=json.dumps({"error": {"message": message, "type": "scripted"}}).encode(),
        headers={"retry-after-ms": "10", **headers},
    )


def judgement(score: float, rationale: str = "Matches the golden answer.") -> Reply:
    return Reply(content=json.dumps({"score": score, "rationale": rationale}))


class ScriptedLLM:
    """The default behaviour: the model answers, the judge grades, unless told otherwise.

    - answers[(model, question)] or answers[question]: the model's answer (default
      "answer to <question>").
    - scores[answer]: the judge's score for an answer (default 1.0).
    - queue: replies used first, in order, whatever the request (scripted failures).
    - hook(body): called with every request before it is answered (may return a Reply).
    """

    def __init__(self) -> None:
        self.answers: dict[Any, str] = {}
        self.scores: dict[str, float] = {}
        self.queue: list[Reply] = []
        self.delay = 0.0
        self.hook: Callable[[dict[str, Any]], Reply | None] | None = None
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        if self.hook is not None:
            reply = self.hook(body)
            if reply is not None:
                return reply
        with self._lock:
            if self.queue:
                return self.queue.pop(0)
        if body.get("model") == JUDGE_MODEL:
            material = json.loads(body["messages"][-1]["content"])
            return judgement(self.scores.get(material["answer"], 1.0))
        question = body["messages"][-1]["content"]
        answer = self.answers.get(
            (body.get("model"), question), self.answers.get(question, f"answer to {question}")
        )
        return Reply(content=answer, delay=self.delay)


class ChatServer:
    def __init__(self, handler: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.handler = handler or ScriptedLLM()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.handler(body)
                    if reply.delay:
                        server._stopping.wait(reply.delay)
                    self._send(body, reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): nothing to answer
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, body: dict[str, Any], reply: Reply) -> None:
                if reply.raw is not None:
                    data = reply.raw
                else:
                    data = json.dumps(
                        {
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "created": 1,
                            "model": body.get("model", ""),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": reply.content},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": reply.prompt_tokens,
                                "completion_tokens": reply.completion_tokens,
                                "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                            },
                        }
                    ).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self._server.server_port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host_port}/v1"

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def model_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") != JUDGE_MODEL]

    def judge_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == JUDGE_MODEL]
