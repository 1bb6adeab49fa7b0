"""Each provider's own settings: the spec's `server:` section, whose fields depend on `provider`.

    provider: ollama-docker
    server:
      ports: [11434, 11435]
      gpu_devices: ["all"]
      image: ollama/ollama:latest
      pull_models: true

The engines take only their provider's section. The flat fields of earlier specs (host,
allow_remote_bind, threads, ports, urls, gpu_devices, docker_image, docker_volume, ollama_binary,
ollama_models_dir, pull_models) are still accepted at the top level and mapped into the section
(FLAT_FIELDS); a flat field the chosen provider has no use for is dropped, as it was ignored
before. Errors name a field where it was written.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, ValidationInfo, field_validator

# How many requests one server works on at once, and how many more Ollama lets wait. Declared once,
# used by each provider's section after its own fields (so the fields a provider allows keep their order).
Slots = Annotated[int, Field(ge=1, le=256, description=(
    "requests each embedded llama.cpp server decodes at once (llama.cpp n_parallel, continuous batching); "
    "num_ctx stays the context of one request: the server gets num_ctx x slots, one num_ctx per slot"))]
NumParallel = Annotated[int, Field(ge=1, le=256, description=(
    "OLLAMA_NUM_PARALLEL: requests each loaded model processes at once (Ollama allocates num_ctx x this)"))]
MaxQueue = Annotated[int, Field(ge=1, le=1_000_000, description=(
    "OLLAMA_MAX_QUEUE: requests Ollama queues when busy; beyond it answers HTTP 503 'server busy'"))]

Provider = Literal["embedded", "external", "ollama-docker", "ollama-process", "mock"]

# Ollama's own port and the next for the Ollama providers (collector 11434, insight 11435); the
# embedded engine uses its own range so that a local Ollama keeps working beside it.
DEFAULT_PORTS = {"embedded": [18434, 18435], "ollama-docker": [11434, 11435], "ollama-process": [11434, 11435],
                 "mock": [18534, 18535]}

# flat top-level field of earlier specs -> its name in the `server:` section
FLAT_FIELDS = {
    "host": "host", "allow_remote_bind": "allow_remote_bind", "threads": "threads", "ports": "ports",
    "urls": "urls", "gpu_devices": "gpu_devices", "docker_image": "image", "docker_volume": "volume",
    "ollama_binary": "binary", "ollama_models_dir": "models_dir", "pull_models": "pull_models",
}

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def unique(v: list) -> list:
    if len(set(v)) != len(v):
        raise ValueError(f"values repeat: {v}")
    return v


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    return _is_ip(host) and ipaddress.ip_address(host).is_loopback


class _Section(BaseModel):
    # allow_inf_nan: a NaN passes every range check (each comparison is False), .inf most of them
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @property
    def parallel_sequences(self) -> int:
        """Requests one server holds at once, each with a whole num_ctx of KV cache (the VRAM estimate's
        multiplier); 1 where trbench does not set it (external servers: their own business)."""
        return 1


class _LocalServers(_Section):
    """Providers that start servers on this machine, one port each."""

    ports: list[int] | None = Field(default=None, min_length=1, description="local ports, one per instance")
    if TYPE_CHECKING:  # each subclass declares its own, a Literal field (not one of this base's, which would move it)
        provider: str

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int] | None) -> list[int] | None:
        for p in v or []:
            if not 1024 <= p <= 65535:
                raise ValueError(f"port must be 1024..65535, got {p}")
        return unique(v) if v else v

    def instance_ports(self) -> list[int]:
        return self.ports or DEFAULT_PORTS[self.provider]


class EmbeddedServer(_LocalServers):
    """llama.cpp servers trbench starts itself (xllamacpp), one process per instance."""

    provider: Literal["embedded"] = Field(default="embedded", exclude=True)
    allow_remote_bind: bool = Field(default=False, description="let the embedded servers listen on a "
                                    "non-loopback host, reachable from the network")
    host: str = Field(default="127.0.0.1", description="address the embedded servers listen on; a non-loopback "
                      "host needs allow_remote_bind: true, and is warned about")
    threads: int | None = Field(default=None, ge=1, le=512, description="embedded engine CPU threads")
    slots: Slots = 1  # 1: one request at a time, each timed alone (the single-agent matrix)

    @property
    def parallel_sequences(self) -> int:
        return self.slots

    @field_validator("host")
    @classmethod
    def _host(cls, v: str, info: ValidationInfo) -> str:
        if not (_is_ip(v) or _HOSTNAME.match(v)):
            raise ValueError(f"host must be an IP address or a host name, got {v!r}")
        if not is_loopback(v) and not info.data.get("allow_remote_bind"):
            raise ValueError(f"{v!r} is not a loopback address: the embedded servers would be reachable from "
                             "the network; fix: use 127.0.0.1, or set allow_remote_bind: true to mean it")
        return v

    @property
    def remote_bind(self) -> bool:
        return not is_loopback(self.host)


class _OllamaServers(_LocalServers):
    gpu_devices: list[str] | None = Field(
        default=None, description="GPU per instance (round robin): docker device request / CUDA_VISIBLE_DEVICES")
    pull_models: bool = Field(default=False, description="preflight pulls missing Ollama models")
    if TYPE_CHECKING:  # each subclass declares them with its own bounds and defaults
        num_parallel: int
        max_queue: int

    def gpu_of(self, index: int) -> str | None:
        gpus = self.gpu_devices or []
        return gpus[index % len(gpus)] if gpus else None

    def concurrency_environment(self) -> dict[str, str]:
        """OLLAMA_NUM_PARALLEL and OLLAMA_MAX_QUEUE as the subclass's num_parallel and max_queue set them."""
        return {"OLLAMA_NUM_PARALLEL": str(self.num_parallel), "OLLAMA_MAX_QUEUE": str(self.max_queue)}

    def concurrency(self) -> dict[str, int]:
        """What the manifest records of how the server queues and batches."""
        return {"num_parallel": self.num_parallel, "max_queue": self.max_queue}

    @property
    def parallel_sequences(self) -> int:
        return self.num_parallel


class OllamaDockerServer(_OllamaServers):
    """`ollama/ollama` containers through the docker SDK, sharing one model volume."""

    provider: Literal["ollama-docker"] = Field(default="ollama-docker", exclude=True)
    image: str = Field(default="ollama/ollama:latest", description="the Ollama server's Docker image")
    volume: str = Field(default="trbench-ollama-models", description="shared model volume: pulled once")
    num_parallel: NumParallel = 1  # trbench's pinned value: one request at a time per model
    max_queue: MaxQueue = 512  # Ollama's own default (envconfig.MaxQueue)


class OllamaProcessServer(_OllamaServers):
    """`ollama serve` subprocesses, one per port."""

    provider: Literal["ollama-process"] = Field(default="ollama-process", exclude=True)
    binary: str = Field(default="ollama", description="the ollama executable")
    models_dir: str = Field(
        default="~/.ollama/models", description="the model store every `ollama serve` uses (OLLAMA_MODELS); "
        "Ollama's default for a user, while Linux service installs keep models in /usr/share/ollama/.ollama/models")
    num_parallel: NumParallel = 1
    max_queue: MaxQueue = 512


# An environment variable's name as a shell exports it: letters, digits and '_', not starting with a digit
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# how API keys start (OpenAI and most gateways: sk-..., sk-proj-...): a value like this is a key, not a name
_KEY_PREFIXES = ("sk-", "sk_", "pk-", "rk-")


class ExternalServer(_Section):
    """Servers someone else runs: trbench health-checks and measures them."""

    provider: Literal["external"] = Field(default="external", exclude=True)
    urls: list[str] = Field(default_factory=list, description="base URLs of running servers")
    api_key_env: str | None = Field(default=None, description="the NAME of the environment variable that holds "
                                    "the servers' API key (never the key itself): every request to them carries "
                                    "`Authorization: Bearer <its value>` (vLLM --api-key, a gateway); the TR records "
                                    "only this name. null: no key sent")

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str | None) -> str | None:
        # the message never repeats the value: it may be the key itself, pasted where its name goes
        if v is not None and (not ENV_NAME.match(v) or v.lower().startswith(_KEY_PREFIXES)):
            raise ValueError("api_key_env takes the name of an environment variable (letters, digits, '_'), and this "
                             "value looks like a key; fix: export the key, e.g. `export TRBENCH_API_KEY=...`, and "
                             "write api_key_env: TRBENCH_API_KEY (never the key in the spec)")
        return v

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"URL must start with http:// or https://, got {u!r}")
        return [u.rstrip("/") for u in v]


class MockServer(_LocalServers):
    """The mock server (trbench/engines/mock_server.py): canned valid and invalid answers at a fixed
    pace, for testing the harness. A TR with it is never a real one (MatrixSpec says how)."""

    provider: Literal["mock"] = Field(default="mock", exclude=True)
    first_token_ms: float = Field(default=20.0, ge=0, le=60_000, description="wait before the first chunk")
    token_ms: float = Field(default=2.0, ge=0, le=10_000, description="wait between chunks (one token each)")
    invalid_every: int = Field(default=3, ge=0, le=1000, description="every n-th JSON answer is invalid; 0: never")


SERVER_SETTINGS: dict[str, type[_Section]] = {
    "embedded": EmbeddedServer, "external": ExternalServer,
    "ollama-docker": OllamaDockerServer, "ollama-process": OllamaProcessServer, "mock": MockServer,
}

ServerSettings = Annotated[EmbeddedServer | ExternalServer | OllamaDockerServer | OllamaProcessServer | MockServer,
                           Discriminator("provider")]


def gather_server(data: dict) -> tuple[dict, dict[str, str]]:
    """The spec's raw mapping with its flat provider fields moved into `server` (the provider's section
    picks the ones it has), and which section field came from which flat field."""
    data = dict(data)
    provider = data.get("provider", "embedded")
    section = data.get("server")
    server = dict(section) if isinstance(section, dict) else {}
    settings = SERVER_SETTINGS.get(provider) if isinstance(provider, str) else None
    flat: dict[str, str] = {}
    for old, new in FLAT_FIELDS.items():
        if old not in data:
            continue
        value = data.pop(old)
        if settings is None or new not in settings.model_fields:
            continue  # the chosen provider has no use for it (as before, when it sat flat and unused)
        if new in server:
            raise ValueError(f"field '{old}' is given twice, flat and as server.{new}; fix: keep server.{new}")
        server[new], flat[new] = value, old
    if settings is None:
        data.pop("server", None)  # an unknown provider: its own error says so, not one per server field
    elif section is None or isinstance(section, dict):
        server["provider"] = provider
        data["server"] = server
    return data, flat
