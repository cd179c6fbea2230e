"""A stub OpenAI-compatible server on 127.0.0.1 for tests: /v1/chat/completions plays a script.

Each request takes the next reply from ``script`` (the last one repeats): ``"ok"`` answers
(JSON, or server-sent events when the request streams), ``"hang"`` sends nothing until long
after any client timeout, ``"stall"`` streams one piece and then stops sending, and an HTTP
status (401, 429, 500...) gets an OpenAI-style error body. The 401 body echoes the key it was
sent, as some servers do, so tests can check that coachbot never repeats it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Say: I hear you.\nWhy: Listening helps [1]."

_ERRORS = {
    400: ("max_tokens is too large for key {key}.", "invalid_request_error", None),
    401: ("Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key"),
    403: ("Project does not have access to this model.", "invalid_request_error", None),
    404: ("The model does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    503: ("The engine is currently overloaded.", "server_error", None),
}


@dataclass
class Request:
    path: str
    authorization: str
    retry_count: int
    body: dict[str, Any]


@dataclass
class StubOpenAI:
    """The server's script and what it received."""

    script: list[int | str] = field(default_factory=lambda: ["ok"])
    reply: str = REPLY
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    release: threading.Event = field(default_factory=threading.Event)

    def next_reply(self) -> int | str:
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]

    @property
    def count(self) -> int:
        return len(self.requests)


def _handler(stub: StubOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            stub.requests.append(
                Request(
                    path=self.path,
                    authorization=self.headers.get("authorization", ""),
                    retry_count=int(self.headers.get("x-stainless-retry-count") or 0),
                    body=body,
                )
            )
            action = stub.next_reply()
            try:
                if action == "hang":
                    stub.release.wait(10)
                elif action == "ok":
                    self._answer(body)
                elif action == "stall":
                    self._answer(body, stall=True)
                else:
                    self._error(int(action))
            except (BrokenPipeError, ConnectionResetError):  # the client gave up: expected
                pass

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _error(self, status: int) -> None:
            key = self.headers.get("authorization", "").removeprefix("Bearer ")
            message, kind, code = _ERRORS.get(status, ("Error.", "server_error", None))
            error = {"message": message.format(key=key), "type": kind, "code": code}
            self._send(status, json.dumps({"error": error}).encode(), "application/json")

        def _answer(self, body: dict[str, Any], stall: bool = False) -> None:
            model = body.get("model", "stub")
            if not body.get("stream"):
                completion = {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": stub.reply},
                            "finish_reason": "stop",
                        }
                    ],
                }
                self._send(200, json.dumps(completion).encode(), "application/json")
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            words = stub.reply.split(" ")
            pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
            for i, piece in enumerate(pieces):
                delta: dict[str, Any] = {"content": piece}
                if i == 0:
                    delta["role"] = "assistant"
                self._event(model, delta, None)
                if stall:
                    stub.release.wait(10)
                    return
            self._event(model, {}, "stop")
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, model: str, delta: dict[str, Any], finish: str | None) -> None:
            chunk = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

    return Handler


@contextmanager
def serve(script: list[int | str] | None = None, reply: str = REPLY) -> Iterator[StubOpenAI]:
    """Run a stub server on a free port of 127.0.0.1; ``url`` is its /v1 base URL."""
    stub = StubOpenAI(script=list(script or ["ok"]), reply=reply)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
