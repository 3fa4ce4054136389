"""A TCP listener on 127.0.0.1 that records every connection it accepts (tests only).

It stands in for whatever an outbound call must never reach (Redis, a metadata service)
and for a server it may reach: each connection is counted when accepted, its request
(head and body) recorded, and answered with the scripted raw bytes. With an SSL context
it records the name the client sent in TLS SNI.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any


def http_reply(body: bytes, status: str = "200 OK", **headers: str) -> bytes:
    """A raw HTTP/1.1 response; Content-Length is added unless given (or set to '')."""
    lines = [f"HTTP/1.1 {status}", "Connection: close"]
    fields = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines += [f"{name}: {value}" for name, value in fields.items() if value]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK_REPLY = http_reply(b'{"ok": true}')


class Listener:
    def __init__(self, reply: bytes = OK_REPLY, ssl_context: ssl.SSLContext | None = None):
        self.reply = reply
        self.accepted = 0
        self.requests: list[bytes] = []
        self.sni_names: list[str | None] = []
        self._ssl_context = ssl_context
        if ssl_context is not None:
            ssl_context.sni_callback = self._record_sni
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _record_sni(self, sock: Any, name: str | None, context: Any) -> None:
        with self._lock:
            self.sni_names.append(name)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self._ssl_context is not None:
                conn = self._ssl_context.wrap_socket(conn, server_side=True)
            request = self._read_request(conn)
            with self._lock:
                self.requests.append(request)
            conn.sendall(self.reply)
        except (OSError, ssl.SSLError):
            pass  # the client gave up (refused the certificate, stopped reading)
        finally:
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body
