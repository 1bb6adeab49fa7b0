"""The floor of bench/harness.py: the least any Python client on this machine can do, right now.

N streams on one event loop (uvloop where installed, as trbench's client), each an asyncio Protocol that
writes its request and, for every read, takes the time and keeps the bytes: no HTTP parsing, no pool,
no timeouts, no reading after the stream, the garbage collector off. Its timestamp error is what the loop and the kernel cost
alone; when it misses the 1 ms target too, the machine (a busy or slowed-down host) is what missed, not
trbench's client. Afterwards (not timed) the tokens are read out of the bytes as bench/bare_httpx.py does.

Run by the harness in a process of its own; prints one JSON object (bare_httpx.summary).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from urllib.parse import urlsplit

from bare_httpx import Exchanges, phase_main, request_tokens, timed_streams

_END = b"0\r\n\r\n"  # the synthetic server's last chunk: the response is over


class _Stamping(asyncio.Protocol):
    def __init__(self) -> None:
        self.times: list[int] = []  # two flat lists, no tuple per read: nothing for a collector to walk
        self.datas: list[bytes] = []
        self.done: asyncio.Future | None = None

    def data_received(self, data: bytes) -> None:
        self.times.append(time.perf_counter_ns())
        self.datas.append(data)
        if data.endswith(_END) and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before the end: {exc}"))


async def _user(host: str, port: int, path: str, stream: int, tokens: int, rounds: int) -> Exchanges:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_Stamping, host, port)
    out = []
    try:
        for r in range(rounds):
            body = json.dumps({"model": "synthetic", "stream": True,
                               "max_tokens": request_tokens(stream, r, tokens, rounds)}).encode()
            proto.times, proto.datas, proto.done = [], [], loop.create_future()
            t_send = time.perf_counter_ns()
            transport.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), port, len(body), body))
            await proto.done
            out.append((t_send, list(zip(proto.times, proto.datas))))
    finally:
        transport.close()
    return out


async def run(url: str, streams: int, tokens: int, rounds: int) -> dict:
    parts = urlsplit(url)
    gc.collect()
    gc.disable()  # as trbench's client runs a load step (trbench.backends.event_loop.collector_paused)
    try:
        return await timed_streams([_user(parts.hostname, parts.port, parts.path, s, tokens, rounds)
                                    for s in range(streams)], streams * rounds)
    finally:
        gc.enable()


if __name__ == "__main__":
    phase_main(__doc__.splitlines()[0], run)
