"""A request sent on a connection the server closes without answering (llama.cpp's HTTP server closes
kept-alive connections; the close can cross the next request on the wire) is sent once more on a new
connection, by the synchronous and the asynchronous client, the Rust runner and the embeddings client alike;
a server that never answers is an error.

The server here is a FAKE written for these tests (a raw socket that reads each request and, for the
first `drops` connections, closes without a byte back), so that the close is certain, not a race.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from trbench.backends import AsyncWireClient, ChatRequest, OpenAIClient, make_client
from trbench.backends.embedding_clients import AsyncEmbeddingsClient
from trbench.backends.external_runner import missing_runner

SSE = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in (
    {"choices": [{"delta": {"content": "Hello"}}]},
    {"choices": [{"delta": {"content": " there"}, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
)) + b"data: [DONE]\n\n"
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(SSE)).encode() + b"\r\n\r\n" + SSE)


EMBEDDING = json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                        "usage": {"prompt_tokens": 2, "total_tokens": 2}}).encode()
EMBEDDING_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                      b"Content-Length: " + str(len(EMBEDDING)).encode() + b"\r\n\r\n" + EMBEDDING)


class DroppingServer:
    """Answers each request with one SSE stream (an OpenAI embeddings answer on /v1/embeddings), except
    that the first `drops` connections are closed as soon as their request has arrived."""

    def __init__(self, drops: int) -> None:
        self.drops, self.connections = drops, 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, body = data.split(b"\r\n\r\n", 1)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
                if self.connections > self.drops:
                    conn.sendall(EMBEDDING_RESPONSE if b" /v1/embeddings " in head else RESPONSE)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[DroppingServer]:
    s = DroppingServer(request.param)
    yield s
    s.close()


REQ = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def _sync(url: str):
    client = OpenAIClient(url, timeout_s=10)
    try:
        return client.chat(REQ)
    finally:
        client.close()


async def _async(url: str):
    async with AsyncWireClient("openai", url, timeout_s=10) as client:
        return await client.chat(REQ)


def _rust(url: str):
    client = make_client("openai", url, 10, harness="rust")
    try:
        return client.chat(REQ)
    finally:
        client.close()


CLIENTS = {"sync": _sync, "async": lambda url: asyncio.run(_async(url)), "rust": _rust}
NAMES = [pytest.param(n, marks=pytest.mark.skipif(n == "rust" and missing_runner("rust") is not None,
                                                  reason="the Rust runner is not built (make setup with cargo)"))
         for n in sorted(CLIENTS)]


@pytest.mark.parametrize("server", [1], indirect=True)
@pytest.mark.parametrize("client", NAMES)
def test_a_request_the_server_dropped_unanswered_is_sent_again(server: DroppingServer, client: str) -> None:
    ex = CLIENTS[client](server.url)
    assert (ex.status, ex.text, ex.output_tokens) == ("ok", "Hello there", 2)
    assert server.connections == 2
    assert ex.t_send_ns < ex.token_times_ns[0]  # timed from the send that was answered


@pytest.mark.parametrize("server", [5], indirect=True)
@pytest.mark.parametrize("client", NAMES)
def test_a_server_that_keeps_dropping_is_an_error_after_one_retry(server: DroppingServer, client: str) -> None:
    ex = CLIENTS[client](server.url)
    assert (ex.status, ex.error_kind) == ("error", "bad_response")
    message = (ex.error_message or "").lower()
    assert "disconnected" in message or "stream broke" in message or "connection closed" in message, message
    assert server.connections == 2


async def _embed(url: str):
    client = AsyncEmbeddingsClient("openai", url, timeout_s=10)
    try:
        return await client.embed("m", ["hi"])
    finally:
        await client.aclose()


@pytest.mark.parametrize(("server", "status"), [(1, "ok"), (5, "error")], indirect=["server"])
def test_an_embeddings_request_the_server_dropped_is_sent_again_once(server: DroppingServer, status: str) -> None:
    ex = asyncio.run(_embed(server.url))
    assert ex.status == status and server.connections == 2
    if status == "ok":
        assert (ex.n_vectors, ex.dims, ex.prompt_tokens) == (1, 2, 2)
    else:
        assert ex.error_kind == "bad_response" and "disconnected" in (ex.error_message or "").lower()
