"""HTTP/1.1 for the load client: keep-alive connections on asyncio Protocols that stamp every network read
the moment the event loop hands it over, and a pool of them.

Why not httpx here: httpx hands a streamed body over through httpcore and h11, one HTTP chunk (one token,
on llama.cpp and Ollama) at a time, at about 19 µs of CPU per token on this machine. At 256 streams of
~240 tok/s that is the whole of a core, and a client that is busy stamps late: the bare httpx loop of
bench/harness.py is 57 ms late at p99 there. Here a read costs what it must: the time, the body framing
taken off (chunked or Content-Length, RFC 9112 §6-7), two appends. Lines and JSON are read after the
response has ended (trbench.backends.async_client). Errors are raised as the httpx exceptions the
synchronous clients meet in the same cases, so one mapping (streaming.record_failure) names them all.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from urllib.parse import urlsplit

import httpx

from trbench.backends.streaming import _DeadlinePassed

_clock = time.perf_counter_ns  # CLOCK_MONOTONIC, as every stamp of a RawExchange


class Received:
    """What one response brought: status, headers, and its body as it arrived, one entry per network read
    that carried body bytes (`times[i]` when `pieces[i]` came). Filled while the response streams in."""

    __slots__ = ("status", "headers", "times", "pieces", "complete")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.times: list[int] = []
        self.pieces: list[bytes] = []
        self.complete = False

    def body(self) -> bytes:
        return b"".join(self.pieces)


class _Chunked:
    """Takes the chunked framing off a body as it arrives (RFC 9112 §7.1): size line, data, CRLF; ... a
    zero size, trailer lines, an empty line. Bare LF line ends are accepted, as h11 does."""

    __slots__ = ("data_left", "crlf_left", "line", "trailer", "done")

    def __init__(self) -> None:
        self.data_left = 0  # bytes of the current chunk's data still to come
        self.crlf_left = 0  # bytes of the CRLF after it
        self.line = b""  # a size or trailer line cut by the end of a read
        self.trailer = False
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if not (self.data_left or self.crlf_left or self.line or self.trailer):
            # the common read, one whole chunk (a token: llama.cpp and Ollama write one per chunk), taken
            # in one slice: half the cost of the general walk below, and this is the timed path
            end = data.find(b"\r\n", 0, 18)
            if end > 0:
                try:
                    size = int(data[:end], 16)
                except ValueError:
                    size = 0  # an extension, or not a size: the walk below reads or refuses it
                if size and len(data) == end + size + 4 and data.endswith(b"\r\n"):
                    return data[end + 2:end + 2 + size]
        out: list[bytes] = []
        pos, n = 0, len(data)
        while pos < n and not self.done:
            if self.data_left:
                take = min(self.data_left, n - pos)
                out.append(data[pos:pos + take])
                pos += take
                self.data_left -= take
                if not self.data_left:
                    self.crlf_left = 2
            elif self.crlf_left:
                if data[pos] == 0x0A:  # a bare LF ends the chunk as well
                    self.crlf_left = 1
                pos += 1
                self.crlf_left -= 1
            else:
                end = data.find(b"\n", pos)
                if end < 0:
                    self.line += data[pos:]
                    break
                line, self.line, pos = (self.line + data[pos:end]).rstrip(b"\r"), b"", end + 1
                if self.trailer:
                    self.done = not line  # trailer fields are not read: the empty line ends the body
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)  # chunk extensions are ignored
                except ValueError:
                    raise httpx.RemoteProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if size:
                    self.data_left = size
                else:
                    self.trailer = True
        return out[0] if len(out) == 1 else b"".join(out)


class _Sized:
    """A Content-Length body."""

    __slots__ = ("left", "done")

    def __init__(self, length: int) -> None:
        self.left, self.done = length, length == 0

    def feed(self, data: bytes) -> bytes:
        take = data[:self.left] if len(data) > self.left else data
        self.left -= len(take)
        self.done = self.left == 0
        return take


class _UntilClose:
    """A body without length or chunks: it ends when the server closes the connection."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def feed(self, data: bytes) -> bytes:
        return data


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\n")
    parts = lines[0].strip().split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if parts[0] == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
        headers["connection"] = "close"
    return int(parts[1]), headers


def _body_reader(status: int, headers: dict[str, str]) -> _Chunked | _Sized | _UntilClose:
    if status in (204, 304):
        return _Sized(0)
    if headers.get("transfer-encoding", "").lower().rsplit(",", 1)[-1].strip() == "chunked":
        return _Chunked()
    if "content-length" in headers:
        try:
            return _Sized(int(headers["content-length"].split(",")[0]))
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
    return _UntilClose()


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time. data_received is the timed path."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._received: Received | None = None
        self._done: asyncio.Future | None = None
        self._head = b""
        self._body: _Chunked | _Sized | _UntilClose | None = None
        self._got_bytes = False
        self.last_read_ns = 0
        self._reusable = True

    # --- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        t_ns = _clock()
        self.last_read_ns = t_ns
        rec, body = self._received, self._body
        if rec is None:  # bytes nobody asked for: this connection cannot be trusted with another request
            self._reusable = False
            return
        self._got_bytes = True
        if body is None:
            try:
                data = self._take_head(data)
            except httpx.RemoteProtocolError as err:
                self._finish(err)
                return
            body = self._body
            if body is None:
                return
        try:
            piece = body.feed(data) if data else b""
        except httpx.RemoteProtocolError as err:
            self._finish(err)
            return
        if piece:
            rec.times.append(t_ns)
            rec.pieces.append(piece)
        if body.done:
            rec.complete = True
            self._finish(None)

    def eof_received(self) -> bool:
        return False  # close our end too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is None or self._done.done():
            return
        if isinstance(self._body, _UntilClose) and self._received is not None:  # a body: a request was sent
            self._received.complete = True
            self._finish(None)
        elif exc is not None and not isinstance(exc, Exception):
            # a stop signal raised inside this connection's callback (trbench.backends.event_loop keeps it
            # and stops the run): the request was cancelled, not broken by the server
            self._done.cancel()
        elif not self._got_bytes:
            self._finish(httpx.RemoteProtocolError("Server disconnected without sending a response."))
        elif exc is not None:
            self._finish(httpx.ReadError(f"{type(exc).__name__}: {exc}"))
        else:
            self._finish(httpx.RemoteProtocolError("peer closed connection without sending complete message body"))

    # --- one request --------------------------------------------------------------------------------
    def send(self, request: bytes, received: Received) -> asyncio.Future:
        """Write the request; the future is done when the response has ended (or raises why it did not)."""
        self._received, self._head, self._body, self._got_bytes = received, b"", None, False
        self._done = asyncio.get_running_loop().create_future()
        self.last_read_ns = _clock()  # the stall watchdog counts the wait for the first byte too
        assert self.transport is not None  # the pool hands out connections once made
        self.transport.write(request)
        return self._done

    def fail(self, err: BaseException) -> None:
        """Cut the request in flight (a timeout, a stall): the connection is closed, never reused."""
        self._finish(err)

    def reusable(self) -> bool:
        return self._reusable and not self.closed

    def release(self) -> None:
        """The request is over: the connection may take another if its response ended cleanly and the
        server did not ask to close."""
        rec = self._received
        if rec is None or not rec.complete or "close" in rec.headers.get("connection", "").lower():
            self._reusable = False
        self._received, self._done, self._body = None, None, None

    def close(self) -> None:
        self.closed, self._reusable = True, False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _take_head(self, data: bytes) -> bytes:
        """Read the status line and headers; what follows them is body. Interim (1xx) heads are passed."""
        head = self._head + data
        while True:
            end = head.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end, sep = head.find(b"\n\n"), 2
            if end < 0:
                if len(head) > 65536:
                    raise httpx.RemoteProtocolError("response head longer than 64 KiB")
                self._head = head
                return b""
            status, headers = _parse_head(head[:end])
            head = head[end + sep:]
            if status >= 200:
                break
        self._head = b""
        assert self._received is not None  # data_received reads a head only for a request sent
        self._received.status, self._received.headers = status, headers
        self._body = _body_reader(status, headers)
        return head

    def _finish(self, err: BaseException | None) -> None:
        done = self._done
        if done is None or done.done():
            return
        if err is None:
            done.set_result(None)
        else:
            self._reusable = False
            done.set_exception(err)


class ConnectionPool:
    """Keep-alive connections to one origin, at most `max_connections` open; a request waits for room."""

    def __init__(self, base_url: str, max_connections: int, connect_timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host, self.netloc = parts.hostname, parts.netloc
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.connect_timeout_s = connect_timeout_s
        self.idle: list[Connection] = []
        self.open: set[Connection] = set()
        self._max = max_connections
        self._room: asyncio.Semaphore | None = None

    async def acquire(self, timeout_s: float, fresh: bool = False) -> Connection:
        """A connection for one request: an idle one (the most recently used), or a new one. fresh: a new
        one, whatever is idle (a request the server dropped unanswered is sent again on a new connection)."""
        if self._room is None:
            self._room = asyncio.Semaphore(self._max)
        try:
            await asyncio.wait_for(self._room.acquire(), max(timeout_s, 0.0))
        except TimeoutError:
            raise httpx.PoolTimeout(f"no free connection within {timeout_s:.3g} s") from None
        try:
            while self.idle and not fresh:
                conn = self.idle.pop()
                if conn.reusable():  # the server may have closed it since, or sent bytes nobody asked for
                    return conn
                conn.close()
                self.open.discard(conn)
            return await self._connect(min(timeout_s, self.connect_timeout_s))
        except BaseException:
            self._room.release()
            raise

    def release(self, conn: Connection) -> None:
        conn.release()
        if conn.reusable():
            self.idle.append(conn)
        else:
            conn.close()
            self.open.discard(conn)
        assert self._room is not None  # made by the acquire this release ends
        self._room.release()

    async def _connect(self, timeout_s: float) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(Connection, self.host, self.port, ssl=self._ssl), max(timeout_s, 0.0))
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {self.netloc} within {timeout_s:.3g} s") from None
        except OSError as err:
            raise httpx.ConnectError(str(err) or type(err).__name__) from None
        self.open.add(conn)
        return conn

    def close(self) -> None:
        for conn in self.open:
            conn.close()
        self.open.clear()
        self.idle.clear()


def post_json(target: str, netloc: str, body: bytes, headers: bytes = b"") -> bytes:
    """The request bytes: as httpx sends a json= POST (its headers, identity encoding: no decompression
    between the socket and the stamp); `headers`: more header lines, each ending in CRLF (header_lines)."""
    return (f"POST {target} HTTP/1.1\r\nHost: {netloc}\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
            f"Connection: keep-alive\r\nUser-Agent: trbench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n").encode("latin-1") + headers + b"\r\n" + body


def header_lines(headers: dict[str, str]) -> bytes:
    """Header lines for post_json, built once per client (not per request: that is the timed path).
    A name or value with a line break would end the head early, and is refused."""
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n"):
            raise ValueError(f"header {name!r} holds a line break")
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode("latin-1")


async def exchange(pool: ConnectionPool, target: str, body: bytes, received: Received, deadline_ns: int,
                   stall_s: float | None, fresh: bool = False, headers: bytes = b"") -> None:
    """Send one request and wait until its response has ended, filling `received` as it streams in.

    Raises the httpx exception of what went wrong (PoolTimeout, ConnectError, ReadTimeout when no byte
    came for stall_s, RemoteProtocolError, ReadError) or _DeadlinePassed when the whole request passed
    deadline_ns; on any of these or a cancellation the connection is closed, never reused."""
    conn = await pool.acquire((deadline_ns - _clock()) / 1e9, fresh)
    loop = asyncio.get_running_loop()
    deadline = loop.call_at(loop.time() + (deadline_ns - _clock()) / 1e9, conn.fail, _DeadlinePassed())
    watchdog = _Watchdog(conn, stall_s, loop) if stall_s else None
    try:
        await conn.send(post_json(target, pool.netloc, body, headers), received)
    finally:  # a response cut short leaves the connection unusable: release closes it
        deadline.cancel()
        if watchdog:
            watchdog.stop()
        pool.release(conn)


class _Watchdog:
    """Cuts a request whose server sent no byte for stall_s (the wait for the first byte included). It
    wakes once per stall_s, not once per read: a read only notes its time (Connection.last_read_ns)."""

    def __init__(self, conn: Connection, stall_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self.conn, self.stall_ns, self.loop = conn, int(stall_s * 1e9), loop
        self.handle = loop.call_later(stall_s, self._check)

    def _check(self) -> None:
        quiet_ns = _clock() - self.conn.last_read_ns
        if quiet_ns >= self.stall_ns:
            self.conn.fail(httpx.ReadTimeout(f"no byte for {self.stall_ns / 1e9:g} s"))
        else:
            self.handle = self.loop.call_later((self.stall_ns - quiet_ns) / 1e9, self._check)

    def stop(self) -> None:
        self.handle.cancel()


def json_body(payload: dict) -> bytes:
    """The JSON body as httpx writes json= (compact, UTF-8, no NaN): the bytes the synchronous clients send."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
