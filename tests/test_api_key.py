"""Servers that ask for an API key (vLLM --api-key, a gateway): the spec names the environment variable
that holds it (server.api_key_env), every client sends `Authorization: Bearer <key>` to such a server,
a missing variable or a refused key is one line naming the variable, and the key itself is never
written anywhere. The server is the mock server with a key: it answers HTTP 401 without it, as vLLM does."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from conftest import free_port

from trbench.backends import AsyncWireClient, ChatRequest, OllamaClient, OpenAIClient
from trbench.backends.auth import RUNNER_KEY_ENV, MissingApiKey, auth_headers, runner_environment
from trbench.backends.embedding_clients import AsyncEmbeddingsClient
from trbench.backends.external_runner import ExternalRunner
from trbench.backends.http1 import header_lines, post_json
from trbench.config.servers import ExternalServer
from trbench.config.spec import SpecError, parse_spec
from trbench.engines import create_instances
from trbench.engines.mock_server import CHAT_ANSWER, Pace, serve
from trbench.run import preflight
from trbench.run.spec_checks import check_spec

VAR = "TRBENCH_TEST_API_KEY"
MODEL = "mock:1b"
HI = ChatRequest(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


@pytest.fixture
def key(monkeypatch) -> str:
    """A distinctive key, in VAR: what a search of every output for it cannot find by chance."""
    value = f"trbk-{secrets.token_hex(16)}"
    monkeypatch.setenv(VAR, value)
    return value


@pytest.fixture
def keyed(key):
    """The mock server, asking for `key` (HTTP 401 without it)."""
    server, _ = serve("127.0.0.1", free_port(), Pace(first_token_ms=1, token_ms=0, invalid_every=0), [MODEL], api_key=key)
    yield server
    server.shutdown()
    server.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def _spec(url: str, **server) -> dict:
    return {"tr_id": "keyed", "provider": "external", "backend": "openai", "models": [MODEL],
            "server": {"urls": [url], **server}}


# --- the spec -------------------------------------------------------------------------------------

def test_api_key_env_names_a_variable_and_the_spec_records_only_that_name(key):
    spec = parse_spec(_spec("http://127.0.0.1:9", api_key_env=VAR))
    assert spec.api_key_env == VAR and spec.server.api_key_env == VAR
    assert spec.model_dump()["server"]["api_key_env"] == VAR and key not in spec.model_dump_json()
    assert parse_spec(_spec("http://127.0.0.1:9")).api_key_env is None  # no key asked for: none sent
    assert parse_spec({"tr_id": "e", "models": ["smollm2:135m"]}).api_key_env is None  # embedded: no such field


@pytest.mark.parametrize("value", ["sk-proj-4f9c2a7d1e8b3c6a", "sk_live_4f9c2a7d1e8b", "4f9c/2a7d+1e8b=", "my key",
                                   "9LIVES", "Bearer abc"])
def test_a_value_that_looks_like_a_key_is_refused_in_one_line_without_repeating_it(value):
    with pytest.raises(SpecError) as err:
        parse_spec(_spec("http://127.0.0.1:9", api_key_env=value))
    line = str(err.value)
    assert "\n" not in line and "field 'server.api_key_env'" in line and "fix: export the key" in line
    assert value not in line  # it may be the key itself


def test_api_key_env_belongs_to_the_external_section_only():
    with pytest.raises(SpecError, match=r"field 'server.api_key_env': Extra inputs are not permitted"):
        parse_spec({"tr_id": "m", "models": ["smollm2:135m"], "server": {"api_key_env": VAR}})


def test_an_unset_variable_is_one_line_naming_it_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.delenv(VAR, raising=False)
    spec = parse_spec({**_spec("http://127.0.0.1:9", api_key_env=VAR), "output_dir": str(tmp_path)})
    with pytest.raises(SpecError) as err:
        check_spec(spec, "spec s.yaml")
    line = str(err.value)
    assert line == (f"spec s.yaml: field 'server.api_key_env': {VAR} is not set in the environment (it holds the "
                    f"servers' API key); fix: export {VAR}=<the key>, or remove api_key_env if the servers take no key")
    monkeypatch.setenv(VAR, "")  # empty is not set: a request would go without a key
    with pytest.raises(SpecError, match=f"{VAR} is not set"):
        check_spec(spec, "spec s.yaml")
    with pytest.raises(MissingApiKey, match=f"{VAR} is not set"):
        auth_headers(VAR)


# --- every client sends the key -------------------------------------------------------------------

@pytest.mark.parametrize("client_cls", [OpenAIClient, OllamaClient])
def test_the_wire_clients_send_the_key(keyed, key, client_cls):
    with_key = client_cls(_url(keyed), timeout_s=30, api_key_env=VAR)
    without = client_cls(_url(keyed), timeout_s=30)
    try:
        ok, refused = with_key.chat(HI), without.chat(HI)
    finally:
        with_key.close()
        without.close()
    assert ok.status == "ok" and CHAT_ANSWER.startswith(ok.text), ok.error_message
    assert refused.http_status == 401 and refused.error_kind == "http_4xx"
    assert keyed.refused == 1 and key not in (refused.error_message or "")


def test_the_load_client_sends_the_key(keyed):
    async def go(api_key_env):
        async with AsyncWireClient("openai", _url(keyed), timeout_s=30, api_key_env=api_key_env) as client:
            return await asyncio.gather(*(client.chat(HI) for _ in range(3)))

    assert all(ex.status == "ok" and ex.text for ex in asyncio.run(go(VAR)))
    assert keyed.refused == 0
    assert all(ex.http_status == 401 for ex in asyncio.run(go(None)))
    assert keyed.refused == 3


def test_the_load_clients_request_head_carries_the_key_once(key):
    head = post_json("/v1/chat/completions", "h:1", b"{}", header_lines(auth_headers(VAR))).decode()
    assert head.count(f"\r\nAuthorization: Bearer {key}\r\n") == 1 and head.endswith("\r\n\r\n{}")
    assert post_json("/p", "h:1", b"{}") == post_json("/p", "h:1", b"{}", header_lines({}))  # no key: as before
    with pytest.raises(ValueError, match="line break"):
        header_lines({"Authorization": "Bearer a\r\nX-Evil: 1"})


def test_the_embeddings_client_sends_the_key(keyed):
    async def go(api_key_env):
        client = AsyncEmbeddingsClient("openai", _url(keyed), timeout_s=30, api_key_env=api_key_env)
        try:
            return await client.embed(MODEL, ["a text"])
        finally:
            await client.aclose()

    assert asyncio.run(go(VAR)).http_status == 404 and keyed.refused == 0  # past the key: the mock embeds nothing
    assert asyncio.run(go(None)).http_status == 401 and keyed.refused == 1


def test_an_external_runner_gets_the_key_in_its_environment_only(key, monkeypatch):
    monkeypatch.setenv(RUNNER_KEY_ENV, "left-over")
    env = runner_environment(VAR)
    assert env is not None and env[RUNNER_KEY_ENV] == key and env[VAR] == key
    assert RUNNER_KEY_ENV not in (runner_environment(None) or {})  # no key asked for: none passed on
    runner = ExternalRunner(["trbench-runner"], VAR)
    assert key not in " ".join(runner.command)


# --- preflight --------------------------------------------------------------------------------------

def _instance(server, api_key_env):
    (inst,) = create_instances(ExternalServer(urls=[_url(server)], api_key_env=api_key_env), Path("."), 1,
                               backend="openai")
    return inst


def test_preflight_sends_the_key(keyed):
    inst = _instance(keyed, VAR)
    preflight.check_health(inst, "openai")
    assert preflight.check_model(inst, "openai", MODEL) == f"{inst.name}: {MODEL} present"
    assert keyed.refused == 0


def test_a_refused_key_is_one_line_naming_its_variable(keyed, key, monkeypatch):
    monkeypatch.setenv(VAR, "trbk-not-the-key")
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check_health(_instance(keyed, VAR), "openai")
    line = str(err.value)
    assert f"the server at {_url(keyed)} refused the key in ${VAR} (HTTP 401); fix: export the server's own key as {VAR}" in line
    assert "\n" not in line and "trbk-not-the-key" not in line and key not in line


def test_a_server_that_asks_for_a_key_none_was_given_for_names_the_field(keyed):
    with pytest.raises(preflight.PreflightError, match=r"asks for an API key \(HTTP 401\); fix: .* server.api_key_env"):
        preflight.check_health(_instance(keyed, None), "openai")


def test_the_ollama_management_calls_send_the_key(keyed, key):
    """An external Ollama behind a gateway: model listing and the calls of unload and model facts."""
    from trbench.engines import ollama_api

    assert [m["name"] for m in ollama_api.tags(_url(keyed), api_key_env=VAR)] == [MODEL]
    assert keyed.refused == 0
    with pytest.raises(ollama_api.OllamaAPIError, match="HTTP 401") as err:
        ollama_api.tags(_url(keyed))
    assert key not in str(err.value)


def test_a_server_error_that_echoes_the_key_is_kept_with_the_key_redacted(key):
    """Some gateways quote the header they refused: the stored and shown message keeps the words, not the key."""
    from trbench.backends.auth import REDACTED, api_key
    from trbench.backends.base import error_text

    body = f'{{"error": {{"message": "invalid token Bearer {key} for route /v1/chat"}}}}'
    assert key in error_text(body)  # a key this process never sent is no secret of the TR's
    api_key(VAR)
    assert error_text(body.encode()) == f"invalid token Bearer {REDACTED} for route /v1/chat"
    assert error_text(f"plain text {key}") == f"plain text {REDACTED}"
