"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat/completions API and misbehaves on request: the
faults a collector meets in production (a 429 storm, 5xx, malformed JSON, a hang past the timeout, no `usage`, a
wrong key). Its answers are deterministic ("echo <n>: <prompt>"), so tests can check that no row is lost or
mixed up. Not a model: the real local counterpart is `transformers serve` (tests/test_backend_openai.py)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    """``mode``: ok | 429 | 500 | malformed | no_choices | slow | no_usage | judge; applied after the first ``ok_first``
    requests (so a run can go well, then fail). ``flaky``: each prompt gets this many 429s before its answer.
    ``key``: when set, requests without ``Authorization: Bearer <key>`` get 401."""

    def __init__(self, mode: str = "ok", *, ok_first: int = 0, flaky: int = 0, key: str | None = None,
                 delay_s: float = 0.0, port: int = 0) -> None:
        self.mode, self.ok_first, self.flaky, self.key, self.delay_s = mode, ok_first, flaky, key, delay_s
        self.requests = 0
        self.seen: Counter[str] = Counter()
        self.max_in_flight = 0
        self._in_flight = 0
        self.auth_headers: list[str] = []
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._send(200, {"status": "ok"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.arrivals.append(time.monotonic())
                    server.requests += 1
                    n = server.requests
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                    server.auth_headers.append(self.headers.get("Authorization", ""))
                try:
                    server._answer(self, body, n)
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _send(self, status: int, payload, raw: bytes | None = None, headers: dict | None = None):
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default (5) refuses connections under 32 concurrent requests

        self._handler = Handler
        self.httpd = Server(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _answer(self, h, body: dict, n: int) -> None:
        if self.key is not None and h.headers.get("Authorization") != f"Bearer {self.key}":
            return h._send(401, {"error": {"message": "invalid api key"}})
        prompt = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
        with self._lock:
            self.seen[prompt] += 1
            tries = self.seen[prompt]
        if self.delay_s:
            time.sleep(self.delay_s)
        if tries <= self.flaky:
            return h._send(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "0"})
        mode = "ok" if n <= self.ok_first else self.mode
        if mode == "429":
            return h._send(429, {"error": {"message": "rate limited"}}, headers={"Retry-After": "0"})
        if mode == "500":
            return h._send(500, {"error": {"message": "internal error"}})
        if mode == "malformed":
            return h._send(200, None, raw=b'{"choices": [{"message": {"content": "cut')
        if mode == "no_choices":
            return h._send(200, {"object": "chat.completion", "choices": []})
        if mode == "slow":
            time.sleep(5)
        text = f"echo {len(prompt)}: {prompt[:40]}"
        if mode == "judge":  # a grader: a score read from the answer ("... grade=0.6 ..."), else no score
            m = re.search(r"grade=([0-9.]+)", prompt)
            text = f"Score: {m.group(1)}" if m else "I cannot decide."
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                  if "messages" in body else {"index": 0, "text": text, "finish_reason": "stop"})
        payload = {"object": "chat.completion", "model": body.get("model"), "choices": [choice]}
        if mode != "no_usage":
            payload["usage"] = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                                "total_tokens": len(prompt.split()) + len(text.split())}
        h._send(200, payload)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
