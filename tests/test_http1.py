"""trbench.backends.http1, the load client's HTTP/1.1: body framing, keep-alive, and what a broken or odd
server does to a request.

The framing is checked against h11 (httpx's own HTTP/1.1 library) as an independent encoder. The servers
of the exchange tests are a FAKE written for them (a raw socket that answers each request with scripted
bytes), so that every framing and every close is certain; the real servers (llama.cpp, the fake Ollama,
the synthetic stream server) are in tests/test_async_client.py and tests/test_closed_keepalive.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import h11
import httpx
import pytest

from trbench.backends import AsyncWireClient, ChatRequest, event_loop
from trbench.backends.http1 import Connection, ConnectionPool, Received, _Chunked, exchange
from trbench.backends.streaming import _DeadlinePassed

SSE = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (
    {"choices": [{"delta": {"content": "Hello"}}]},
    {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
)) + b"data: [DONE]\n\n"
REQ = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def h11_chunked(pieces: list[bytes], trailers: list[tuple[bytes, bytes]] = ()) -> bytes:
    """The body as h11 frames it, one chunk per piece (what follows the response head on the wire)."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    conn.next_event(), conn.next_event()
    conn.send(h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")]))  # the head: not wanted
    wire = b"".join(conn.send(h11.Data(data=p)) for p in pieces)
    return wire + conn.send(h11.EndOfMessage(headers=list(trailers)))


def decode(wire: bytes, cuts: list[int]) -> tuple[bytes, bool]:
    dec, out, last = _Chunked(), [], 0
    for cut in [*sorted(cuts), len(wire)]:
        out.append(dec.feed(wire[last:cut]))
        last = cut
    return b"".join(out), dec.done


@pytest.mark.parametrize("trailers", [[], [(b"X-Checksum", b"abc")]])
def test_chunked_body_decodes_as_h11_framed_it_however_the_reads_cut_it(trailers) -> None:
    pieces = [b"data: one\n\n", b"x" * 300, b"\r\n0\r\n\r\n", b"z"]  # a piece that looks like the end marker
    wire = h11_chunked(pieces, trailers)
    body = b"".join(pieces)
    for cut in range(len(wire) + 1):  # every place one read can end and the next begin
        assert decode(wire, [cut]) == (body, True), cut
    rnd = random.Random(7)
    for _ in range(200):
        assert decode(wire, rnd.sample(range(len(wire)), rnd.randint(2, 30))) == (body, True)


def test_chunked_extensions_bare_lf_and_bytes_after_the_end() -> None:
    wire = b"5;name=value\r\nhello\r\n6\n world\n0\n\nHTTP/1.1 200 OK\r\n"
    assert decode(wire, []) == (b"hello world", True)


def test_unfinished_chunked_body_is_not_done() -> None:
    wire = h11_chunked([b"abc", b"def"])
    assert decode(wire[:-5], []) == (b"abcdef", False)


def test_bad_chunk_size_is_a_protocol_error() -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="bad chunk size line b'zz'"):
        _Chunked().feed(b"zz\r\nhello\r\n")


class ScriptedServer:
    """A FAKE HTTP server: the n-th request it reads (over all connections) is answered with replies[n]
    (raw bytes, or None: close without a byte); `close_after` answers close the connection after."""

    def __init__(self, replies: list[bytes | None], close_after: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.replies, self.close_after, self.tls = list(replies), close_after, tls
        self.connections = self.requests = 0
        self.heads: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.tls:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):  # a client that refused the certificate
                conn.close()
                return
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    got = conn.recv(65536)
                    if not got:
                        return
                    data += got
                head, data = data.split(b"\r\n\r\n", 1)
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self.heads.append(head)
                reply = self.replies[min(self.requests, len(self.replies) - 1)]
                self.requests += 1
                if reply is None:
                    return
                conn.sendall(reply)
                if self.close_after:
                    return

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def scripted(request: pytest.FixtureRequest) -> Iterator[ScriptedServer]:
    server = ScriptedServer(*request.param)
    yield server
    server.close()


def chunked_response(pieces: list[bytes], extra_head: bytes = b"") -> bytes:
    wire = h11_chunked(pieces)
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + extra_head + \
        b"Transfer-Encoding: chunked\r\n\r\n" + wire


def sized_response(body: bytes, status: bytes = b"200 OK", version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    return version + b" " + status + b"\r\nContent-Type: application/json\r\n" + extra + \
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def _chats(url: str, n: int = 1, **kw) -> list:
    async with AsyncWireClient("openai", url, timeout_s=kw.pop("timeout_s", 10.0), **kw) as client:
        return [await client.chat(REQ) for _ in range(n)]


def chats(url: str, n: int = 1, **kw) -> list:
    return event_loop.run(_chats(url, n, **kw))


@pytest.mark.parametrize("scripted", [([chunked_response([SSE[:20], SSE[20:]])],)], indirect=True)
def test_keep_alive_answers_reuse_one_connection(scripted: ScriptedServer) -> None:
    exchanges = chats(scripted.url, 3)
    assert [(e.status, e.text, e.output_tokens) for e in exchanges] == [("ok", "Hello there", 2)] * 3
    assert (scripted.connections, scripted.requests) == (1, 3)
    head = scripted.heads[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert "Accept-Encoding: identity" in head and "Content-Type: application/json" in head


@pytest.mark.parametrize("scripted", [
    ([chunked_response([SSE], b"Connection: close\r\n")], True),  # the server says so
    ([sized_response(SSE, version=b"HTTP/1.0")], True),  # HTTP/1.0 without keep-alive closes
], indirect=True)
def test_a_connection_the_server_closes_is_not_reused(scripted: ScriptedServer) -> None:
    exchanges = chats(scripted.url, 3)
    assert [e.text for e in exchanges] == ["Hello there"] * 3
    assert scripted.connections == 3


@pytest.mark.parametrize("scripted", [([b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + SSE],
                                       True)], indirect=True)
def test_a_body_without_length_ends_with_the_connection(scripted: ScriptedServer) -> None:
    [ex] = chats(scripted.url)
    assert (ex.status, ex.text, ex.finish_reason) == ("ok", "Hello there", "stop")


@pytest.mark.parametrize("scripted", [([b"HTTP/1.1 100 Continue\r\n\r\n" + chunked_response([SSE])],)],
                         indirect=True)
def test_an_interim_response_is_passed_over(scripted: ScriptedServer) -> None:
    [ex] = chats(scripted.url)
    assert (ex.status, ex.http_status, ex.text) == ("ok", 200, "Hello there")


@pytest.mark.parametrize("scripted", [([sized_response(b'{"error":{"message":"model is loading"}}',
                                                       b"503 Service Unavailable")],)], indirect=True)
def test_an_error_status_is_recorded_with_the_servers_message(scripted: ScriptedServer) -> None:
    [ex] = chats(scripted.url)
    assert (ex.status, ex.error_kind, ex.http_status) == ("error", "http_5xx", 503)
    assert ex.error_message == "HTTP 503: model is loading"


@pytest.mark.parametrize("scripted", [([chunked_response([SSE[:60]])[:-5]], True)], indirect=True)
def test_a_body_cut_by_the_server_is_a_broken_stream_and_keeps_what_came(scripted: ScriptedServer) -> None:
    [ex] = chats(scripted.url)
    assert (ex.status, ex.error_kind, ex.http_status) == ("error", "bad_response", 200)
    assert "stream broke" in ex.error_message and "without sending complete message body" in ex.error_message
    assert ex.text == "Hello"  # the line that came whole before the cut


@pytest.mark.parametrize("scripted", [([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"],)], indirect=True)
def test_a_server_that_does_not_speak_http_is_a_bad_response(scripted: ScriptedServer) -> None:
    [ex] = chats(scripted.url)
    assert (ex.status, ex.error_kind) == ("error", "bad_response")
    assert "not an HTTP/1.x status line: 'SSH-2.0-OpenSSH_9.6'" in ex.error_message


def test_a_request_waiting_past_its_deadline_for_a_connection_is_a_timeout() -> None:
    # a listening socket that never accepts: the kernel completes the connection, nobody answers
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"

        async def two_on_one_connection() -> list:
            pool = ConnectionPool(url, max_connections=1, connect_timeout_s=5.0)
            first = asyncio.create_task(exchange(pool, "/", b"{}", Received(), time.perf_counter_ns() + 2_000_000_000,
                                                 None))
            await asyncio.sleep(0.2)  # the first holds the one connection
            second = exchange(pool, "/", b"{}", Received(), time.perf_counter_ns() + 300_000_000, None)
            results = await asyncio.gather(first, second, return_exceptions=True)
            pool.close()
            return results

        first, second = event_loop.run(two_on_one_connection())
    assert isinstance(first, _DeadlinePassed)
    assert isinstance(second, httpx.PoolTimeout) and "no free connection" in str(second)


def test_a_silent_server_is_a_stall_and_a_slow_one_a_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        [stall] = chats(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=5.0, stall_timeout_s=0.3)
        [slow] = chats(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=0.3, stall_timeout_s=None)
    assert (stall.error_kind, slow.error_kind) == ("stall", "timeout")
    assert "no byte for 0.3 s (stall_timeout_s)" in stall.error_message
    assert "longer than timeout_s=0.3 s" in slow.error_message


def test_load_mode_runs_on_uvloop() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_module()).startswith("uvloop")


def test_a_stop_signal_raised_in_a_read_cancels_the_request_rather_than_breaking_it() -> None:
    # uvloop closes a transport whose data_received raised KeyboardInterrupt with that exception
    # (tests/test_load_interrupt.py): the request in flight was cancelled, it did not fail
    class Transport:  # the transport's two calls a request makes, nothing sent anywhere
        def write(self, data: bytes) -> None: ...

        def is_closing(self) -> bool:
            return True

    async def cut(exc: BaseException) -> asyncio.Future:
        conn = Connection()
        conn.connection_made(Transport())
        done = conn.send(b"POST / HTTP/1.1\r\n\r\n", Received())
        conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        conn.connection_lost(exc)
        return done

    interrupted = event_loop.run(cut(KeyboardInterrupt()))
    broken = event_loop.run(cut(ConnectionResetError("reset by peer")))
    assert interrupted.cancelled()
    assert isinstance(broken.exception(), httpx.ReadError) and "reset by peer" in str(broken.exception())


def self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, in PEM files (cryptography, as a CA would sign one)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trbench test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def test_https_verifies_the_servers_certificate(tmp_path, monkeypatch) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = ScriptedServer([chunked_response([SSE[:30], SSE[30:]])], tls=tls)
    try:
        [untrusted] = chats(server.url)  # the system's CAs do not know this certificate
        monkeypatch.setenv("SSL_CERT_FILE", cert)  # OpenSSL's default verify paths: now they do
        trusted = chats(server.url, 2)
    finally:
        server.close()
    assert (untrusted.status, untrusted.error_kind) == ("error", "connect")
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.error_message
    assert [(e.status, e.text) for e in trusted] == [("ok", "Hello there")] * 2
    assert server.connections == 2  # the refused handshake, then one kept-alive connection for both


def test_the_collector_waits_while_a_load_loop_runs_and_comes_back_after() -> None:
    import gc

    async def collector_on() -> bool:
        return gc.isenabled()

    assert gc.isenabled()
    assert event_loop.run(collector_on()) is False
    assert gc.isenabled() and gc.get_freeze_count() == 0  # enabled again, nothing left frozen
    # two loops at once (threads): the collector stays off until the last one ends
    with event_loop.collector_paused():
        assert event_loop.run(collector_on()) is False
        assert not gc.isenabled()
    assert gc.isenabled()
