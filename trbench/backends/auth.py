"""The API key of a server that asks for one (vLLM --api-key, a gateway): `Authorization: Bearer <key>`.

The spec names the environment variable that holds the key (server.api_key_env), never the key. What
is passed around trbench, recorded and shown is that name; the key is read from the environment only
where a request's headers are built, and goes nowhere else (not into a model, a row, a log line or an
error message). An external runner gets it in its own environment as RUNNER_KEY_ENV.
"""

from __future__ import annotations

import os

# the variable an external runner reads the key from (docs/runner-contract.md): its environment, never
# its argv or a job, which other processes and the runner's own error lines could show
RUNNER_KEY_ENV = "TRBENCH_RUNNER_API_KEY"


# every key this process has sent: a server's error text that echoes one (some gateways quote the
# header they refused) is stored and shown with the key replaced (redact)
_SENT: set[str] = set()
REDACTED = "[api key]"


class MissingApiKey(ValueError):
    """The variable the spec names as the key's holder is not set (or empty)."""


def missing_key(api_key_env: str | None) -> str | None:
    """Why the key cannot be sent (one line with the fix), or None when it can (or none is asked for)."""
    if api_key_env is None or os.environ.get(api_key_env):
        return None
    return (f"{api_key_env} is not set in the environment (it holds the servers' API key); "
            f"fix: export {api_key_env}=<the key>, or remove api_key_env if the servers take no key")


def api_key(api_key_env: str | None) -> str | None:
    """The key in api_key_env; None when none is asked for. MissingApiKey when the variable is not set."""
    if api_key_env is None:
        return None
    if (why := missing_key(api_key_env)) is not None:
        raise MissingApiKey(why)
    key = os.environ[api_key_env]
    _SENT.add(key)
    return key


def redact(text: str) -> str:
    """text with every key this process has sent replaced by REDACTED."""
    for key in _SENT:
        text = text.replace(key, REDACTED)
    return text


def auth_headers(api_key_env: str | None) -> dict[str, str]:
    """The headers every request to a server whose key is in api_key_env carries; {} when it has none."""
    key = api_key(api_key_env)
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def runner_environment(api_key_env: str | None) -> dict[str, str] | None:
    """The environment of an external runner: this process's, with the key as RUNNER_KEY_ENV (and no
    key of another run's left in it); None (inherit) when no key is asked for and none is set."""
    if api_key_env is None and RUNNER_KEY_ENV not in os.environ:
        return None
    env = {k: v for k, v in os.environ.items() if k != RUNNER_KEY_ENV}
    key = api_key(api_key_env)
    if key is not None:
        env[RUNNER_KEY_ENV] = key
    return env
