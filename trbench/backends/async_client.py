"""The asynchronous wire client of load mode: many streams in flight on one asyncio event loop, each
request recorded as the same RawExchange as the synchronous clients.

The timed path does nothing but stamp: every network read is kept as it came, with the time the event
loop handed it over (time.perf_counter_ns), its HTTP framing taken off (trbench.backends.http1), and
nothing is split, decoded or parsed until the stream has ended. The lines are then read by the
synchronous clients' own reader (streaming.read_lines, as trbench.backends.replay), and every line that
one read carried gets that read's arrival time: that is when the client saw it. Run it on uvloop
(trbench.backends.event_loop.run) when it times many streams: asyncio's own loop costs three times the CPU
per read.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from itertools import islice
from urllib.parse import urlsplit

from trbench.backends import BACKENDS, WIRE_FORMATS
from trbench.backends.auth import auth_headers
from trbench.backends.base import ChatRequest, RawExchange
from trbench.backends.http1 import ConnectionPool, Received, exchange, header_lines, json_body
from trbench.backends.streaming import (STREAM_FAILURES, connect_timeout, dropped_before_answer, fail_http,
                                        open_exchange, read_lines, record_failure, require_text)

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_SLICE = 32  # lines read between two returns to the event loop (~0.1 ms of parsing)


class AsyncWireClient:
    """One client for any number of concurrent chat() calls on one event loop.

    An exchange cut by cancellation (asyncio.CancelledError) is recorded with error kind "cancelled",
    kept in `cancelled` (nothing measured is lost) and the cancellation goes on up.
    """

    def __init__(self, backend: str, base_url: str, timeout_s: float = 300.0,
                 stall_timeout_s: float | None = 60.0, max_connections: int = 1024,
                 api_key_env: str | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(repr(b) for b in BACKENDS)}")
        self.backend = backend
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.stall_timeout_s = timeout_s, stall_timeout_s
        self._client, self._wire = BACKENDS[backend], WIRE_FORMATS[backend]  # path() and body(); line reader
        self.cancelled: list[RawExchange] = []
        self._parse_turn = asyncio.Lock()
        self._pool = ConnectionPool(self.base_url, max_connections, connect_timeout(timeout_s))
        self._headers = header_lines(auth_headers(api_key_env))  # the server's key, if it asks for one

    async def chat(self, req: ChatRequest) -> RawExchange:
        url = f"{self.base_url}{self._client.path(req)}"
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return await self._send(url, target, json_body(self._client.body(req)), req.model, fresh=False)

    async def _send(self, url: str, target: str, body: bytes, model: str, fresh: bool) -> RawExchange:
        ex = open_exchange(self.backend, url, model)
        received = Received()
        cut: BaseException | None = None
        try:
            await exchange(self._pool, target, body, received, ex.t_send_ns + int(self.timeout_s * 1e9),
                           self.stall_timeout_s, fresh, self._headers)
        except STREAM_FAILURES + (asyncio.CancelledError,) as err:
            if not fresh and dropped_before_answer(received.status, err):
                return await self._send(url, target, body, model, fresh=True)
            cut = err
        ex.t_end_ns = time.perf_counter_ns()
        ex.http_status = received.status
        if received.status is not None and received.status >= 400:
            if cut is None:
                fail_http(ex, received.status, received.body())
                return ex
        else:
            # the lines first: an error line read before the cut is what went wrong
            try:
                await self._read(ex, arrived_lines(received.times, received.pieces))
            except asyncio.CancelledError as err:
                cut = cut or err
        if cut is not None:
            record_failure(ex, cut, url, self.timeout_s, self.stall_timeout_s)
            if isinstance(cut, asyncio.CancelledError):
                self.cancelled.append(ex)
                raise cut
        return require_text(ex)

    async def _read(self, ex: RawExchange, lines: Iterator[tuple[int, str]]) -> None:
        """Read the stream's lines a slice at a time, giving the event loop back in between: the other
        streams' reads are stamped on time, not after the whole of a long stream has been parsed. One
        slice at a time over all streams: the loop runs every callback that is ready before it looks at
        the sockets again, and 200 streams ending together would otherwise make 200 slices (~20 ms) ready
        at once. Cancelled mid-way, it reads the rest at once, so that the record is whole."""
        try:
            while True:
                async with self._parse_turn:
                    batch = list(islice(lines, _SLICE))
                    done = read_lines(ex, batch, self._wire.read_line, self._wire.strip_prefix)
                if done or len(batch) < _SLICE:
                    return
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            read_lines(ex, lines, self._wire.read_line, self._wire.strip_prefix)
            raise

    async def aclose(self) -> None:
        self._pool.close()

    async def __aenter__(self) -> AsyncWireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def arrived_lines(times: list[int], reads: list[bytes]) -> Iterator[tuple[int, str]]:
    """The lines of a stream but blank ones, each with the arrival time of the read that completed it;
    a last line without its newline arrives with the last read."""
    pending, t_ns = b"", 0
    for t_ns, data in zip(times, reads, strict=True):
        *lines, pending = _NEWLINE.split(pending + data)
        for line in lines:
            if line:  # the blank line ending each SSE event: every reader passes it by
                yield t_ns, line.decode(errors="replace")
    if pending:
        yield t_ns, pending.decode(errors="replace")
