"""The asynchronous wire client of load mode: many streams in flight on one asyncio event loop and one
pooled httpx.AsyncClient, each request recorded as the same RawExchange as the synchronous clients.

The timed path does nothing but stamp: every network read is kept as it came, with its arrival time
(time.perf_counter_ns), and nothing is split, decoded or parsed until the stream has ended. The lines
are then read by the synchronous clients' own reader (streaming.read_lines, as trbench.backends.replay),
and every line that one read carried gets that read's arrival time: that is when the client saw it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Iterator

import httpx

from trbench.backends import BACKENDS, WIRE_FORMATS
from trbench.backends.base import ChatRequest, RawExchange
from trbench.backends.streaming import (STREAM_FAILURES, _DeadlinePassed, fail_http, http_timeout, open_exchange,
                                        read_lines, record_failure, require_text)

_NEWLINE = re.compile(rb"\r\n|\r|\n")


class AsyncWireClient:
    """One client for any number of concurrent chat() calls on one event loop.

    An exchange cut by cancellation (asyncio.CancelledError) is recorded with error kind "cancelled",
    kept in `cancelled` (nothing measured is lost) and the cancellation goes on up.
    """

    def __init__(self, backend: str, base_url: str, timeout_s: float = 300.0,
                 stall_timeout_s: float | None = 60.0, max_connections: int = 1024) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(repr(b) for b in BACKENDS)}")
        self.backend = backend
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.stall_timeout_s = timeout_s, stall_timeout_s
        self._client, self._wire = BACKENDS[backend], WIRE_FORMATS[backend]  # path() and body(); line reader
        self.cancelled: list[RawExchange] = []
        per_read = http_timeout(timeout_s, stall_timeout_s)
        # waiting for a free connection counts against the whole request, like everything after the send
        timeout = httpx.Timeout(connect=per_read.connect, read=per_read.read, write=per_read.write, pool=timeout_s)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # trust_env off: a benchmark of a local server must never go through a proxy; identity encoding:
        # the raw bytes read are the stream's own, with no decompression in the timed path
        self._http = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False,
                                       headers={"Accept-Encoding": "identity"})

    async def chat(self, req: ChatRequest) -> RawExchange:
        url = f"{self.base_url}{self._client.path(req)}"
        payload = self._client.body(req)
        ex = open_exchange(self.backend, url, req.model)
        deadline_ns = ex.t_send_ns + int(self.timeout_s * 1e9)
        reads: list[tuple[int, bytes]] = []
        cut: BaseException | None = None
        try:
            async with self._http.stream("POST", url, json=payload) as resp:
                ex.http_status = resp.status_code
                if resp.status_code >= 400:
                    fail_http(ex, resp.status_code, await resp.aread())
                else:
                    await _receive(resp, reads, deadline_ns)
        except (*STREAM_FAILURES, asyncio.CancelledError) as err:
            cut = err
        ex.t_end_ns = time.perf_counter_ns()
        # the lines first: an error line read before the cut is what went wrong
        read_lines(ex, arrived_lines(reads), self._wire.read_line, self._wire.strip_prefix)
        if cut is not None:
            record_failure(ex, cut, url, self.timeout_s, self.stall_timeout_s)
            if isinstance(cut, asyncio.CancelledError):
                self.cancelled.append(ex)
                raise cut
        return require_text(ex)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncWireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _receive(resp: httpx.Response, reads: list[tuple[int, bytes]], deadline_ns: int) -> None:
    """The timed path: each read with its arrival time, and the whole-request deadline (a server that
    keeps sending, however slowly, never meets the per-read timeout)."""
    clock, append = time.perf_counter_ns, reads.append
    async for data in resp.aiter_raw():
        t_ns = clock()
        if t_ns > deadline_ns:
            raise _DeadlinePassed
        append((t_ns, data))


def arrived_lines(reads: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, str]]:
    """The lines of a stream, each with the arrival time of the read that completed it; a last line
    without its newline arrives with the last read."""
    pending, t_ns = b"", 0
    for t_ns, data in reads:
        *lines, pending = _NEWLINE.split(pending + data)
        for line in lines:
            yield t_ns, line.decode(errors="replace")
    if pending:
        yield t_ns, pending.decode(errors="replace")
