"""A synthetic OpenAI-compatible streaming server for bench/harness.py, written for the benchmark.

POST /v1/chat/completions (any path, in fact) answers a Server-Sent Events stream, HTTP/1.1 chunked
as llama.cpp's server sends it: `max_tokens` chunks at a fixed rate per stream (--rate tokens/s, the
first within one token period, each stream at its own phase of the period), then a last chunk with finish_reason and usage, then `data: [DONE]`. Each token's
text is " <send time>": time.perf_counter_ns() read just before the chunk is written to the socket
(CLOCK_MONOTONIC on Linux, so the client process can compare it with its own arrival times).

It must not be the bottleneck: stdlib asyncio with Protocols (no per-stream task, no HTTP framework),
one scheduler for all streams (a heap of due times), the chunk bytes built from a fixed template, and
a stream that has fallen behind gets every token it owes in one write. Started with --port 0 it picks
a free port; it prints `listening <host>:<port>` once it accepts connections, and runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import re
import signal
import sys
import time

_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n")
# a chat.completion.chunk as OpenAI and llama.cpp send it, the token's text being its send time
_TOKEN = (b'data: {"id":"chatcmpl-synthetic","object":"chat.completion.chunk","created":0,"model":"synthetic",'
          b'"choices":[{"index":0,"delta":{"content":" %d"},"finish_reason":null}]}\n\n')
_LAST = (b'data: {"id":"chatcmpl-synthetic","object":"chat.completion.chunk","created":0,"model":"synthetic",'
         b'"choices":[{"index":0,"delta":{},"finish_reason":"length"}],'
         b'"usage":{"prompt_tokens":1,"completion_tokens":%d,"total_tokens":%d}}\n\ndata: [DONE]\n\n')
_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class _Stream:
    """One response in progress: its connection, its schedule and how far it has got."""

    __slots__ = ("transport", "t0_ns", "n_tokens", "sent", "conn")

    def __init__(self, conn: _Connection, n_tokens: int, t0_ns: int) -> None:
        self.conn, self.transport, self.n_tokens, self.t0_ns, self.sent = conn, conn.transport, n_tokens, t0_ns, 0


class Scheduler:
    """Sends every stream's due tokens: the token i of a stream is due at t0 + i / rate."""

    def __init__(self, rate: float) -> None:
        self.period_ns = round(1e9 / rate)
        self._heap: list[tuple[int, int, _Stream]] = []
        self._seq = 0  # tie-breaker: streams are not ordered
        self._streams = 0
        self._wake = asyncio.Event()

    def next_phase_ns(self) -> int:
        """Where in the token period the next stream's tokens fall: spread evenly (golden-ratio steps), as
        independent streams are. Streams that arrive together would otherwise tick in lockstep, and the
        client would be timing bursts of one token per stream rather than a steady rate."""
        self._streams += 1
        return int((self._streams * 0.6180339887) % 1.0 * self.period_ns)

    def add(self, stream: _Stream) -> None:
        self._push(stream.t0_ns, stream)
        self._wake.set()

    def _push(self, due_ns: int, stream: _Stream) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due_ns, self._seq, stream))

    async def run(self) -> None:
        heap, clock, period = self._heap, time.perf_counter_ns, self.period_ns
        while True:
            if not heap:
                self._wake.clear()
                await self._wake.wait()
            now = clock()
            while heap and heap[0][0] <= now:
                _, _, s = heapq.heappop(heap)
                if s.transport.is_closing():
                    continue
                due = min(s.n_tokens, (now - s.t0_ns) // period + 1)  # tokens owed by now, all sent at once
                t_ns = clock()
                data = b"".join(_chunk(_TOKEN % t_ns) for _ in range(due - s.sent))
                s.sent = due
                if s.sent == s.n_tokens:
                    data += _chunk(_LAST % (s.n_tokens, s.n_tokens + 1)) + b"0\r\n\r\n"
                    s.conn.stream = None
                else:
                    self._push(s.t0_ns + s.sent * period, s)
                s.transport.write(data)
            # epoll waits in whole milliseconds: sleep to the next due time, a millisecond at least when
            # nothing is due yet (the write above was stamped when made, so a late wake-up costs no error)
            if heap:
                await asyncio.sleep(max(0.0, (heap[0][0] - clock()) / 1e9))


class _Connection(asyncio.Protocol):
    """HTTP/1.1 keep-alive: a request (headers, Content-Length body of JSON), then its stream."""

    def __init__(self, scheduler: Scheduler, default_tokens: int) -> None:
        self.scheduler, self.default_tokens = scheduler, default_tokens
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.stream: _Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.stream is not None:
            return
        found = _CONTENT_LENGTH.search(self.buffer, 0, end)
        length = int(found[1]) if found else 0
        if len(self.buffer) < end + 4 + length:
            return
        body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
        try:
            n_tokens = int(json.loads(body or b"{}").get("max_tokens") or self.default_tokens)
        except (ValueError, AttributeError) as err:
            message = json.dumps({"error": {"message": f"bad request body: {err}"}}).encode()
            self.transport.write(_BAD_REQUEST % (len(message), message))
            return
        self.transport.write(_HEAD)
        self.stream = _Stream(self, max(1, n_tokens), time.perf_counter_ns() + self.scheduler.next_phase_ns())
        self.scheduler.add(self.stream)


async def serve(host: str, port: int, rate: float, default_tokens: int) -> None:
    scheduler = Scheduler(rate)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(scheduler, default_tokens), host, port,
                                      backlog=4096, reuse_address=True)
    bound = server.sockets[0].getsockname()
    print(f"listening {bound[0]}:{bound[1]}", flush=True)
    async with server:
        await scheduler.run()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port, printed")
    ap.add_argument("--rate", type=float, default=250.0, help="tokens per second per stream")
    ap.add_argument("--tokens", type=int, default=256, help="tokens per stream when the request has no max_tokens")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the harness stops it; nothing to flush
    try:
        asyncio.run(serve(args.host, args.port, args.rate, args.tokens))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: end quietly
        sys.exit(130)


if __name__ == "__main__":
    main()
