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
from collections.abc import Iterator
from itertools import islice

import httpcore
import httpx

from trbench.backends import BACKENDS, WIRE_FORMATS
from trbench.backends.base import ChatRequest, RawExchange
from trbench.backends.streaming import (STREAM_FAILURES, _DeadlinePassed, fail_http, http_timeout, open_exchange,
                                        read_lines, record_failure, require_text, dropped_before_answer)

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_SLICE = 64  # lines read between two returns to the event loop (~0.1 ms of parsing)


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
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        if _LinearPool.fits(transport._pool):
            transport._pool.__class__ = _LinearPool
            transport._pool._network_backend = _StampingBackend(transport._pool._network_backend)
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False,
                                       headers={"Accept-Encoding": "identity"})

    async def chat(self, req: ChatRequest) -> RawExchange:
        url = f"{self.base_url}{self._client.path(req)}"
        payload = self._client.body(req)
        return await self._send(url, payload, req.model, retry=True)

    async def _send(self, url: str, payload: dict, model: str, retry: bool) -> RawExchange:
        ex = open_exchange(self.backend, url, model)
        deadline_ns = ex.t_send_ns + int(self.timeout_s * 1e9)
        # two flat lists, not (time, bytes) pairs: no object for the garbage collector to walk per read
        times: list[int] = []
        reads: list[bytes] = []
        cut: BaseException | None = None
        try:
            async with self._http.stream("POST", url, json=payload) as resp:
                ex.http_status = resp.status_code
                if resp.status_code >= 400:
                    fail_http(ex, resp.status_code, await resp.aread())
                else:
                    await _receive(resp, times, reads, deadline_ns)
        except (*STREAM_FAILURES, asyncio.CancelledError) as err:
            if retry and dropped_before_answer(ex.http_status, err):
                return await self._send(url, payload, model, retry=False)
            cut = err
        ex.t_end_ns = time.perf_counter_ns()
        # the lines first: an error line read before the cut is what went wrong
        try:
            await self._read(ex, arrived_lines(times, reads))
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
        streams' reads are stamped on time, not after the whole of a long stream has been parsed.
        Cancelled mid-way, it reads the rest at once, so that the record is whole."""
        try:
            while True:
                batch = list(islice(lines, _SLICE))
                if read_lines(ex, batch, self._wire.read_line, self._wire.strip_prefix) or len(batch) < _SLICE:
                    return
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            read_lines(ex, lines, self._wire.read_line, self._wire.strip_prefix)
            raise

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncWireClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _LinearPool(httpcore.AsyncConnectionPool):
    """httpcore's pool with its bookkeeping pass made linear in the connections (encode/httpcore#1035,
    open): httpcore 1.0 counts all connections once per idle one at every request start and end, so
    when hundreds of streams end together (a load step's end) the pass is cubic in all, and it blocks
    the event loop for the streams still being timed (measured: 41 % of the client's CPU at 256 streams
    of 500 tokens). The same decisions, in the same order, but: surplus idle connections are counted as
    idle ones (httpcore compares the count of all connections, its bug 1 in #1035), and an idle one's
    expiry is checked when a request is waiting, not at every pass."""

    @staticmethod
    def fits(pool: object) -> bool:
        """The pool is httpcore's own, with the internals this pass uses (httpcore 1.0); another is left as is."""
        return httpcore.__version__.startswith("1.0.") and type(pool) is httpcore.AsyncConnectionPool and all(
            hasattr(pool, name) for name in ("_connections", "_requests", "_max_connections", "_network_backend",
                                             "_max_keepalive_connections", "create_connection",
                                             "_assign_requests_to_connections"))

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        kept, idle = [], []
        queued = [request for request in self._requests if request.is_queued()]
        for conn in self._connections:
            if conn.is_closed():
                continue
            # has_expired polls an idle socket (the server may have closed it): done only when a request
            # may take it, not at every request end, where polling each idle one was most of the pass
            idle_now = conn.is_idle()
            expired = conn.has_expired() if queued or not idle_now else False
            if expired or (idle_now and len(idle) >= self._max_keepalive_connections):
                closing.append(conn)
                continue
            if idle_now:
                idle.append(conn)
            kept.append(conn)
        self._connections[:] = kept
        available = [conn for conn in kept if conn.is_available()] if queued else []
        for pool_request in queued:
            origin = pool_request.request.url.origin
            reusable = [conn for conn in available if conn.can_handle_request(origin)]
            if reusable:
                pool_request.assign_to_connection(reusable[0])
                if reusable[0] in idle:  # spoken for: never the one closed to make room (encode/httpcore#1110)
                    idle.remove(reusable[0])
                continue
            if len(self._connections) >= self._max_connections:
                if not idle:
                    continue  # it waits for a connection to be released
                surplus = idle.pop(0)  # make room: close an idle connection to another origin
                self._connections.remove(surplus)
                closing.append(surplus)
            conn = self.create_connection(origin)
            self._connections.append(conn)
            pool_request.assign_to_connection(conn)
        return closing


class _StampingStream(httpcore.AsyncNetworkStream):
    """A connection's socket that notes when each read returned: every piece of the response that read
    carried is stamped with it, not with the later moment httpx hands that piece over."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self.read_ns = 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        self.read_ns = time.perf_counter_ns()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> _StampingStream:  # noqa: ANN001
        return _StampingStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _StampingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, *args, **kwargs) -> _StampingStream:  # noqa: ANN002, ANN003
        return _StampingStream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args, **kwargs) -> _StampingStream:  # noqa: ANN002, ANN003
        return _StampingStream(await self._inner.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _receive(resp: httpx.Response, times: list[int], reads: list[bytes], deadline_ns: int) -> None:
    """The timed path: each piece with the arrival time of the network read that brought it (the time
    it is handed over, where the socket is not one of ours), and the whole-request deadline (a server
    that keeps sending, however slowly, never meets the per-read timeout)."""
    sock = resp.extensions.get("network_stream")
    clock = (lambda: sock.read_ns) if isinstance(sock, _StampingStream) else time.perf_counter_ns
    stamp, keep = times.append, reads.append
    async for data in resp.aiter_raw():
        t_ns = clock()
        if t_ns > deadline_ns:
            raise _DeadlinePassed
        stamp(t_ns)
        keep(data)


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
