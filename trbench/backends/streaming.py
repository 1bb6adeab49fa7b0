"""The request loop both wire clients share: send, time every streamed line, map failures.

A backend supplies only how to build its body and how to read one line of its stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from trbench.backends.base import RawExchange, classify_http_error, error_text, is_oom


class StreamError(Exception):
    """An error object inside an otherwise well-formed stream."""


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
) -> RawExchange:
    ex = RawExchange(backend=backend, url=url, model=model, sent_at_unix=time.time(), t_send_ns=0, t_end_ns=0)
    ex.t_send_ns = time.perf_counter_ns()
    try:
        with http.stream("POST", url, json=payload) as resp:
            ex.http_status = resp.status_code
            if resp.status_code >= 400:
                message = error_text(resp.read())
                _fail(ex, classify_http_error(resp.status_code, message), f"HTTP {resp.status_code}: {message}")
                return ex
            for line in resp.iter_lines():
                now = time.perf_counter_ns()
                if strip_prefix:
                    if not line.startswith(strip_prefix):
                        continue  # SSE comments, event names, keep-alives
                    line = line[len(strip_prefix):].strip()
                    if line == "[DONE]":
                        break
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError:
                    _fail(ex, "bad_response", f"not JSON: {line[:200]}")
                    return ex
                if read_line(data, now, ex):
                    break
    except StreamError as err:
        message = str(err)
        _fail(ex, "oom" if is_oom(message) else "bad_response", message)
    except httpx.TimeoutException as err:
        _fail(ex, "timeout", f"{type(err).__name__}: {err}")
    except httpx.ConnectError as err:
        _fail(ex, "connect", f"cannot connect to {url}: {err}")
    except (httpx.RemoteProtocolError, httpx.ReadError) as err:
        _fail(ex, "bad_response", f"stream broke: {type(err).__name__}: {err}")
    except KeyboardInterrupt:
        _fail(ex, "cancelled", "interrupted")
        raise
    finally:
        ex.t_end_ns = time.perf_counter_ns()
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
