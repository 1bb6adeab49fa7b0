"""`trbench init`: a first spec for the user's own server, written as commented YAML that says what
each field does and the common alternatives, and that `trbench validate` accepts as it stands.

What it needs is given here as data (InitAnswers: the kind of server, its URLs, the models chosen
from those it lists, the tr_id); asking for it, and listing a server's models, are done above this
layer (trbench/engines/served_models.py lists them, the CLI asks). The text is rendered from
templates/init_spec.yaml.j2 and parsed again as a spec before anyone writes it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trbench.config.errors import SpecError
from trbench.config.servers import ExternalServer, Provider
from trbench.config.spec import MOCK_TR_PREFIX, TR_ID_PATTERN, Backend, MatrixSpec, parse_spec

# How many of a server's models a spec measures when nobody chooses: every model of a short list,
# else the first few (each model is a load and a whole grid of runs).
DEFAULT_MODEL_COUNT = 3


class ServerKind(BaseModel):
    """What `trbench init --provider NAME` sets up: which provider and wire protocol the spec names,
    where the models are listed, and the URL a server of this kind usually answers at."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider: Provider
    backend: Backend
    what: str  # for the spec's first comment and the prompts
    short: str  # for its title
    lists: str  # where its model names come from
    default_url: str | None  # None: trbench starts the servers itself (no URL)
    example_url: str | None  # the second server's, in the comment that says how to add one
    max_tokens: int
    timeout_s: int


SERVER_KINDS: dict[str, ServerKind] = {k.name: k for k in (
    ServerKind(name="ollama", provider="external", backend="ollama", what="an Ollama server you run", short="Ollama",
               lists="GET /api/tags, as `ollama list` shows them", default_url="http://127.0.0.1:11434",
               example_url="http://127.0.0.1:11435", max_tokens=128, timeout_s=300),
    ServerKind(name="external", provider="external", backend="openai",
               what="an OpenAI-compatible server you run (llama.cpp's llama-server, vLLM, LM Studio, ...)",
               short="an OpenAI-compatible server",
               lists="GET /v1/models", default_url="http://127.0.0.1:8080", example_url="http://127.0.0.1:8081",
               max_tokens=128, timeout_s=300),
    ServerKind(name="embedded", provider="embedded", backend="openai",
               what="llama.cpp servers that trbench starts with its bundled models", short="the embedded llama.cpp engine",
               lists="the GGUF models bundled with trbench", default_url=None, example_url=None,
               max_tokens=64, timeout_s=120),
)}


class ScaffoldError(ValueError):
    """Answers `trbench init` cannot write a spec from; str() is one line with the fix."""


class InitAnswers(BaseModel):
    """Everything a generated spec depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ServerKind
    urls: list[str] = Field(default_factory=list, max_length=2, description="one server, or two for multi_agent")
    models: list[str] = Field(min_length=1)
    tr_id: str = Field(pattern=TR_ID_PATTERN)
    api_key_env: str | None = Field(default=None, description="the variable holding the server's API key")

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        return ExternalServer(urls=v).urls  # the spec's own rule (http:// or https://, no trailing slash)

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, v: str | None) -> str | None:
        return ExternalServer(api_key_env=v).api_key_env  # the spec's own rule (a name, never a key)

    @model_validator(mode="after")
    def _urls_for_the_kind(self) -> InitAnswers:
        if self.kind.default_url is None and (self.urls or self.api_key_env):
            raise ValueError(f"provider {self.kind.name} starts its own servers: it takes no URL or API key")
        if self.kind.default_url is not None and not self.urls:
            raise ValueError(f"provider {self.kind.name} measures a server you run: give its URL")
        return self

    @property
    def multi_agent(self) -> bool:
        """Two servers given: the multi-agent runs have theirs (the embedded provider gets a comment)."""
        return len(self.urls) == 2


def kind_of(name: str) -> ServerKind:
    kind = SERVER_KINDS.get(name.strip().lower())
    if kind is None:
        raise ScaffoldError(f"unknown provider {name!r}; fix: use one of {', '.join(SERVER_KINDS)} (ollama-process, "
                            "ollama-docker and mock: write the spec by hand, docs/spec.md)")
    return kind


def default_tr_id(kind: ServerKind) -> str:
    return f"{kind.name}-tr"


def default_models(listed: list[str]) -> list[str]:
    return listed[:DEFAULT_MODEL_COUNT]


def choose_models(listed: list[str], answer: str, where: str) -> list[str]:
    """The models an answer names, from those `where` (the server at URL) lists: names or 1-based
    numbers of the list, comma-separated, or "all"; ScaffoldError names one that is not there."""
    words = [w.strip() for w in answer.split(",") if w.strip()]
    if [w.lower() for w in words] == ["all"]:
        return list(listed)
    chosen: list[str] = []
    for word in words:
        if word.isdigit() and 1 <= int(word) <= len(listed):
            name = listed[int(word) - 1]
        elif word in listed:
            name = word
        elif f"{word}:latest" in listed:  # Ollama's name for a model asked for without a tag
            name = f"{word}:latest"
        else:
            raise ScaffoldError(f"model {word!r} is not listed by {where} ({', '.join(listed)}); fix: choose "
                                "one of those (a name or its number), or make it available there first")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ScaffoldError("no model chosen; fix: name at least one, e.g. --models " + listed[0])
    return chosen


def check_tr_id(tr_id: str) -> str:
    """A tr_id the spec accepts (one path component; 'mock...' is kept for the mock provider)."""
    if not re.match(TR_ID_PATTERN, tr_id):
        raise ScaffoldError(f"tr_id {tr_id!r}: use letters, digits, '_', '.' and '-' only (at most 64, not starting "
                            "with '.' or '-'); fix: e.g. --tr-id my-first-tr")
    if tr_id.lower().startswith(MOCK_TR_PREFIX):
        raise ScaffoldError(f"tr_id {tr_id!r}: tr_ids starting with {MOCK_TR_PREFIX!r} are kept for the mock "
                            "provider; fix: choose another")
    return tr_id


def check_server(kind: ServerKind, urls: list[str], api_key_env: str | None) -> list[str]:
    """The URLs as the spec will hold them, before any is asked for its models; ScaffoldError for what
    the kind cannot take (a URL for the embedded engine, more than two servers, a URL without its
    scheme, a key where the name of its variable goes)."""
    if kind.default_url is None and (urls or api_key_env):
        raise ScaffoldError(f"--url/--api-key-env: provider {kind.name} starts its own servers; fix: leave them "
                            "out, or use --provider ollama or external for a server you run")
    if len(urls) > 2:
        raise ScaffoldError(f"--url given {len(urls)} times; fix: give one server, or two for the multi-agent runs")
    try:
        return ExternalServer(urls=urls, api_key_env=api_key_env).urls
    except ValidationError as err:  # the first error's own message is the line, named by the flag
        first = err.errors()[0]
        field = "--api-key-env" if first["loc"][:1] == ("api_key_env",) else "--url"
        what, _, fix = first["msg"].removeprefix("Value error, ").partition("; fix: ")
        raise ScaffoldError(f"{field}: {what}; fix: {fix or 'e.g. --url ' + (kind.default_url or '')}") from None


def _yaml_value(value: object) -> str:
    # JSON is YAML's flow style: strings quoted and escaped, lists in brackets, whatever they hold
    return json.dumps(value, ensure_ascii=False)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("trbench.config", "templates"), trim_blocks=True, lstrip_blocks=True,
    keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
_TEMPLATES.filters["yaml"] = _yaml_value


def render_spec(answers: InitAnswers, path: str) -> str:
    """The commented YAML of the spec (`path`: where it will be, for the commands its comments show)."""
    kind = answers.kind
    names = ", ".join(answers.models)
    title = f"{answers.tr_id}: {names} on {kind.short}"
    objective = (f"Single-agent throughput, TTFT and latency of {names}"
                 + (", and what two agents working at once on two servers cost each other" if answers.multi_agent
                    else "") + ".")
    text = _TEMPLATES.get_template("init_spec.yaml.j2").render(
        kind=kind, urls=answers.urls, models=answers.models, tr_id=answers.tr_id, title=title, objective=objective,
        path=path, multi_agent=answers.multi_agent, api_key_env=answers.api_key_env, second_url=kind.example_url, max_tokens=kind.max_tokens,
        timeout_s=kind.timeout_s)
    return text.rstrip("\n") + "\n"


def spec_of(text: str, source: str) -> MatrixSpec:
    """The rendered text read back as a spec: what `trbench validate` will read from the file."""
    try:
        return parse_spec(yaml.safe_load(text), source)
    except yaml.YAMLError as err:  # the template's own fault, never the user's answers
        raise SpecError(f"{source}: the generated text is not valid YAML ({err})") from None


def check_target(path: Path, force: bool) -> None:
    """A path the spec may be written to: not a folder, and no file there unless force."""
    if path.is_dir():
        raise ScaffoldError(f"{path} is a folder; fix: give a file path, e.g. {path / 'tr.yaml'}")
    if path.exists() and not force:
        raise ScaffoldError(f"{path} already exists; fix: give another path, or --force to overwrite it")


def write_new(path: Path, text: str, force: bool) -> None:
    """Write the spec, refusing to replace a file that is there unless force."""
    check_target(path, force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ScaffoldError(f"{path}: cannot write it ({err.strerror or err}); fix: give a path you can write") from None
