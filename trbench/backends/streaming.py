"""The request loop both wire clients share: send, time every streamed line, map failures.

A backend supplies only how to build its body and how to read one line of its stream.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from collections.abc import Callable, Iterable, Iterator

import httpx
import orjson

from trbench.backends.base import RawExchange, classify_http_error, error_text, is_oom
from trbench.prose import count


class StreamError(Exception):
    """An error object inside an otherwise well-formed stream."""


class _DeadlinePassed(Exception):
    """The whole request took longer than timeout_s."""


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _loads(line: str) -> Any:  # a JSON value, as json.loads gives it
    """json.loads, through orjson first: one decode per streamed chunk is most of a client's reading
    (3-4x faster). What orjson refuses and json takes (NaN, integers past 64 bits, lone surrogates)
    is read by json, so the same lines are accepted as before."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def http_timeout(timeout_s: float, stall_timeout_s: float | None) -> httpx.Timeout:
    """httpx's read timeout is per read: it is the stall watchdog (no byte for stall_timeout_s,
    the wait for the first byte included); the whole request has a deadline of its own."""
    per_read = min(timeout_s, stall_timeout_s) if stall_timeout_s else timeout_s
    return httpx.Timeout(per_read, connect=connect_timeout(timeout_s))


def connect_timeout(timeout_s: float) -> float:
    """Seconds a connection may take to open: at most 10, at most the request's own timeout."""
    return min(10.0, timeout_s)


def watched_lines(resp: httpx.Response, deadline_ns: int | None) -> Iterator[str]:
    """resp.iter_lines(), with the whole-request deadline checked at every chunk received: a
    server that keeps sending, however slowly, never meets a per-read timeout."""
    pending = ""
    for text in resp.iter_text():
        if deadline_ns is not None and time.perf_counter_ns() > deadline_ns:
            raise _DeadlinePassed
        *lines, pending = _NEWLINE.split(pending + text)
        yield from lines
    if pending:
        yield pending


# Reads one decoded JSON line into the exchange, stamping its arrival time; returns True when done.
LineReader = Callable[[dict, int, RawExchange], bool]


def stream_exchange(
    http: httpx.Client,
    backend: str,
    url: str,
    model: str,
    payload: dict,
    read_line: LineReader,
    strip_prefix: str = "",
    timeout_s: float | None = None,
    stall_timeout_s: float | None = None,
) -> RawExchange:
    """timeout_s bounds the whole request; stall_timeout_s, when shorter, cuts a server gone
    silent (the client's read timeout must be http_timeout(timeout_s, stall_timeout_s))."""
    # httpx's sync client works in this thread: its CPU is the harness's (a resend included)
    cpu0 = time.thread_time_ns()
    for attempt in range(2):
        ex = open_exchange(backend, url, model)
        deadline_ns = ex.t_send_ns + int(timeout_s * 1e9) if timeout_s else None
        try:
            with http.stream("POST", url, json=payload) as resp:
                ex.http_status = resp.status_code
                if resp.status_code >= 400:
                    fail_http(ex, resp.status_code, resp.read())
                    return ex
                for line in watched_lines(resp, deadline_ns):
                    if feed_line(ex, line, time.perf_counter_ns(), read_line, strip_prefix):
                        break
        except STREAM_FAILURES + (KeyboardInterrupt,) as err:
            if attempt == 0 and dropped_before_answer(ex.http_status, err):
                continue
            record_failure(ex, err, url, timeout_s, stall_timeout_s)
            if isinstance(err, KeyboardInterrupt):
                raise
        finally:
            ex.t_end_ns = time.perf_counter_ns()
            ex.client_cpu_ns = time.thread_time_ns() - cpu0
        break
    return require_text(ex)


def dropped_before_answer(http_status: int | None, err: BaseException) -> bool:
    """The connection closed before any byte of a response: a kept-alive connection the server had
    just closed (llama.cpp's HTTP server closes idle ones; the close can cross the next request on
    the wire). The server never took the request, so it is sent once more on a new connection and
    timed from that send; a second such close is recorded as the error it is."""
    return isinstance(err, (httpx.RemoteProtocolError, httpx.ReadError)) and http_status is None


def open_exchange(backend: str, url: str, model: str) -> RawExchange:
    """The record of a request about to be sent, its send time taken last."""
    ex = RawExchange(backend=backend, url=url, model=model, sent_at_unix=time.time(), t_send_ns=0, t_end_ns=0)
    ex.t_send_ns = time.perf_counter_ns()
    return ex


def fail_http(ex: RawExchange, status: int, body: bytes) -> None:
    message = error_text(body)
    _fail(ex, classify_http_error(status, message), f"HTTP {status}: {message}")


# what cuts a request short and is recorded as its error kind (record_failure), sync or async
STREAM_FAILURES: tuple[type[BaseException], ...] = (
    StreamError, _DeadlinePassed, httpx.TimeoutException, httpx.ConnectError, httpx.RemoteProtocolError,
    httpx.ReadError,
)


def record_failure(ex: RawExchange, err: BaseException, url: str, timeout_s: float | None,
                   stall_timeout_s: float | None) -> None:
    """Record why a request was cut (one of STREAM_FAILURES, or an interrupt: Ctrl-C, a cancelled task).
    A failure already recorded (a broken line read before the cut) stays: it came first."""
    if ex.status == "error":
        return
    if isinstance(err, StreamError):
        _fail(ex, "oom" if is_oom(str(err)) else "bad_response", str(err))
    elif isinstance(err, _DeadlinePassed):
        _fail(ex, "timeout", f"the request took longer than timeout_s={timeout_s:g} s")
    elif isinstance(err, httpx.ReadTimeout) and stall_timeout_s and timeout_s and stall_timeout_s < timeout_s:
        _fail(ex, "stall", f"the server sent no byte for {stall_timeout_s:g} s (stall_timeout_s); "
                           f"cut after {count(len(ex.token_times_ns), 'text chunk')}")
    elif isinstance(err, httpx.TimeoutException):
        _fail(ex, "timeout", f"{type(err).__name__}: {err}")
    elif isinstance(err, httpx.ConnectError):
        _fail(ex, "connect", f"cannot connect to {url}: {err}")
    elif isinstance(err, (httpx.RemoteProtocolError, httpx.ReadError)):
        _fail(ex, "bad_response", f"stream broke: {type(err).__name__}: {err}")
    else:  # KeyboardInterrupt, asyncio.CancelledError: recorded, and the caller re-raises
        _fail(ex, "cancelled", "interrupted")


def feed_line(ex: RawExchange, line: str, t_ns: int, read_line: LineReader, strip_prefix: str = "") -> bool:
    """Read one line of a stream that arrived at t_ns into the exchange; True when the stream is done
    (its end marker, its last chunk, or a line that is not JSON, which fails the exchange).
    Raises StreamError for an error object inside the stream."""
    if strip_prefix:
        if not line.startswith(strip_prefix):
            return False  # SSE comments, event names, keep-alives
        line = line[len(strip_prefix):].strip()
        if line == "[DONE]":
            return True
    if not line.strip():
        return False
    try:
        data = _loads(line)
    except ValueError:
        _fail(ex, "bad_response", f"not JSON: {line[:200]}")
        return True
    return read_line(data, t_ns, ex)


def replay_lines(ex: RawExchange, lines: Iterable[tuple[int, str]], read_line: LineReader,
                 strip_prefix: str = "") -> RawExchange:
    """Build the exchange from lines already received with their arrival times (an asynchronous client
    or an external runner that keeps parsing out of its timed path): the same reading as a live stream."""
    read_lines(ex, lines, read_line, strip_prefix)
    return require_text(ex)


def read_lines(ex: RawExchange, lines: Iterable[tuple[int, str]], read_line: LineReader,
               strip_prefix: str = "") -> bool:
    """replay_lines without the final check for text, for a stream whose end is yet to be recorded or
    that is read in parts; True when its end or a failure was read (what comes after is not read)."""
    try:
        for t_ns, line in lines:
            if feed_line(ex, line, t_ns, read_line, strip_prefix):
                return True
    except StreamError as err:
        _fail(ex, "oom" if is_oom(str(err)) else "bad_response", str(err))
        return True
    return False


def require_text(ex: RawExchange) -> RawExchange:
    """A stream that ended cleanly but carried no generated text is a bad response."""
    if ex.status == "ok" and not ex.token_times_ns:
        _fail(ex, "bad_response", "the stream ended without any generated text")
    return ex


def _fail(ex: RawExchange, kind: str, message: str) -> None:
    ex.status = "error"
    ex.error_kind = kind  # type: ignore[assignment]
    ex.error_message = message


def stamp(ex: RawExchange, t_ns: int, content: str | None, reasoning: str | None) -> None:
    """Record the text a chunk carried; a chunk with both counts as reasoning first."""
    if reasoning:
        ex.reasoning_text += reasoning
        ex.token_times_ns.append(t_ns)
        ex.token_kinds.append("reasoning")
    if content:
        ex.text += content
        ex.token_times_ns.append(t_ns)
        ex.token_kinds.append("content")
