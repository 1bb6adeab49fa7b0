"""A FAKE streaming LLM server that sends tokens at a known, fixed pace. It runs no model.

Timing tests need a server whose answer times are known: the first token `first_s` after the request
was read, then one token every `pace_s`, each sent at its scheduled instant (t0 + first_s + k*pace_s,
not a sleep after the previous one, so late wake-ups do not add up). It speaks both wire formats as
trbench reads them: OpenAI-compatible SSE (POST /v1/chat/completions, /v1/completions; `data: {...}`
lines, a usage chunk, `data: [DONE]`) and Ollama NDJSON (POST /api/chat, /api/generate; a final
`done: true` object). It reports no server durations: only the client-side clock is under test.

With `reasoning=N` the first N tokens are reasoning, streamed as the servers that separate it do, before
the answer: llama.cpp's server (--reasoning-format deepseek/auto) as OpenAI chat deltas
`{"reasoning_content": ...}` with no content key, Ollama (think on) as `message.thinking` beside an empty
`message.content` (`thinking` beside an empty `response` on /api/generate).

Misbehaviours: `truncate_after=N` sends N tokens, then closes the connection without ending the
chunked body (a server that died mid-stream); `garbage_after=N` sends N tokens, then a line that is
not JSON (an SSE data line, for the OpenAI format).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer

from tests.fakes.fake_ollama import GoLikeHandler


class FakePacedServer:
    def __init__(self, pace_s: float = 0.02, first_s: float = 0.04, n_tokens: int = 20,
                 truncate_after: int | None = None, garbage_after: int | None = None, reasoning: int = 0) -> None:
        self.pace_s, self.first_s, self.n_tokens, self.reasoning = pace_s, first_s, n_tokens, reasoning
        self.truncate_after, self.garbage_after = truncate_after, garbage_after
        self.bodies: list[tuple[str, dict]] = []  # (path, JSON body) of every request received
        # per request, on time.perf_counter_ns (CLOCK_MONOTONIC, shared by all processes): when its
        # headers had been read, and when its first token was written; GET /log answers it
        self.log: list[dict[str, int]] = []
        self._lock = threading.Lock()
        self._conns: set = set()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakePacedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for conn in list(self._conns):
                conn.close()


class _Handler(GoLikeHandler):
    fake: FakePacedServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        return

    def do_GET(self) -> None:
        with self.fake._lock:
            data = json.dumps(self.fake.log).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        t0 = time.perf_counter()
        entry = {"t_recv_ns": time.perf_counter_ns()}
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with self.fake._lock:
            self.fake.bodies.append((self.path, body))
            self.fake.log.append(entry)
        sse = self.path.startswith("/v1/")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        f = self.fake
        for k in range(f.n_tokens):
            if k == f.truncate_after:
                self.connection.shutdown(2)  # no terminating chunk: the stream is cut
                self.close_connection = True
                return
            if k == f.garbage_after:
                self._send(b"data: this is not json\n\n" if sse else b"this is not json\n")
                break
            delay = t0 + f.first_s + k * f.pace_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            entry.setdefault("t_first_sent_ns", time.perf_counter_ns())
            self._send(self._token(sse, self.path, f"t{k} ", thinking=k < f.reasoning))
        else:
            self._send(self._end(sse, self.path, f.n_tokens))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _send(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    @staticmethod
    def _token(sse: bool, path: str, text: str, thinking: bool = False) -> bytes:
        if sse:
            delta = {"reasoning_content": text} if thinking else {"content": text}
            choice = {"index": 0, "delta": delta} if path.endswith("chat/completions") else {"index": 0, "text": text}
            return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"
        if path == "/api/chat":
            key: dict = {"message": {"role": "assistant", "content": "", "thinking": text} if thinking
                         else {"role": "assistant", "content": text}}
        else:
            key = {"response": "", "thinking": text} if thinking else {"response": text}
        return json.dumps({"model": "paced", **key, "done": False}).encode() + b"\n"

    @staticmethod
    def _end(sse: bool, path: str, n: int) -> bytes:
        if sse:
            last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
            return (b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        return json.dumps({"model": "paced", "done": True, "done_reason": "length"}).encode() + b"\n"


def main() -> None:
    """Serve in a process of its own (the timing tests: no GIL shared with the client under test); prints the URL."""
    import argparse
    import sys

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pace-s", type=float, default=0.02)
    p.add_argument("--first-s", type=float, default=0.04)
    p.add_argument("--n-tokens", type=int, default=20)
    args = p.parse_args()
    with FakePacedServer(args.pace_s, args.first_s, args.n_tokens) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()  # until the parent closes stdin (or dies)


if __name__ == "__main__":
    main()
