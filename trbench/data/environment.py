"""The environment manifest: what a TR run's numbers were measured on (the code, the packages, the
machine, the servers, the models' facts), the spec and the VRAM budget. trbench.measure.manifest
collects it; it is written to manifest.json and into every Parquet file's metadata (data.store), and
its digest stamps every row.

Manifests written by any version read back (Manifest.lenient, trbench.data.recorded): what no
longer validates is left out, keys this version does not declare are kept, and a manifest written
back holds the keys it was made with, so its digest is that of the dict it replaced."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import field_validator

from trbench.data.budget_record import BudgetRecord
from trbench.data.model_facts import ModelFacts
from trbench.data.recorded import Recorded


class GitState(Recorded):
    commit: str | None = None  # None outside a git checkout
    dirty: bool | None = None  # tracked files changed since the commit


class Gpu(Recorded):
    index: int | None = None
    name: str | None = None
    memory_total_mib: int | None = None

    def describe(self) -> str:
        return f"{self.name or '?'}" + (f" ({self.memory_total_mib} MiB)" if self.memory_total_mib else "")


class Hardware(Recorded):
    cpu: str | None = None
    cpu_cores_logical: int | None = None
    memory_gib: float | None = None
    gpus: list[Gpu] = []
    platform: str | None = None
    python: str | None = None

    @field_validator("gpus", mode="before")
    @classmethod
    def _named(cls, v: Any) -> Any:
        """Older manifests name a GPU by a string alone."""
        return [{"name": g} if isinstance(g, str) else g for g in v] if isinstance(v, list) else v


class InstanceDescription(Recorded):
    """One server instance: where it is, its threads, and how it batches and queues (embedded: slots;
    Ollama: num_parallel, max_queue; None where the provider does not say)."""

    name: str = "?"
    provider: str | None = None
    url: str | None = None
    threads: int | None = None
    concurrency: dict[str, int] | None = None
    version: str | None = None  # the server's own answer where its protocol has a version endpoint

    @property
    def address(self) -> str | None:
        """Its URL (older manifests call it base_url)."""
        base = (self.model_extra or {}).get("base_url")
        return self.url or (base if isinstance(base, str) else None)


class FanoutHost(Recorded):
    """One sub-run of a fanned-out TR run: the model it measured, where, and on what."""

    model: str | None = None
    worker: str | None = None
    flow_run: str | None = None
    hardware: Hardware | None = None
    instances: list[InstanceDescription] | None = None
    # the earlier attempts at this share whose host died or whose process crashed: flow run, worker, how it ended
    earlier: list[str] | None = None


def _dicts(v: Any) -> Any:
    """A list's entries that are records at all (older or hand-made manifests hold other things)."""
    return [e for e in v if isinstance(e, dict | Recorded)] if isinstance(v, list) else v


class Manifest(Recorded):
    """One TR run's environment (module doc). `spec` is the spec as recorded: a dict, since one
    recorded by an older version may no longer parse (its readers parse it and fall back)."""

    command: str | None = None
    git: GitState | None = None
    packages: dict[str, str | None] = {}
    hardware: Hardware | None = None
    instances: list[InstanceDescription] = []
    models: dict[str, ModelFacts] = {}
    spec: dict[str, Any] | None = None
    vram_budget: list[BudgetRecord] = []
    fanout: list[FanoutHost] | None = None
    # older manifests kept the baseline model at the top
    baseline_model: str | None = None
    baseline: str | None = None

    @field_validator("instances", "vram_budget", mode="before")
    @classmethod
    def _records_only(cls, v: Any) -> Any:
        return _dicts(v)

    @field_validator("models", mode="before")
    @classmethod
    def _facts_only(cls, v: Any) -> Any:
        return {k: f for k, f in v.items() if isinstance(f, dict | Recorded)} if isinstance(v, dict) else v

    def json_text(self, indent: int | None = None) -> str:
        """The manifest as JSON (keys sorted; what JSON cannot hold as its string)."""
        return json.dumps(self.recorded(), indent=indent, sort_keys=True, default=str)

    def digest(self) -> str:
        """16 hex digits of sha256 over the JSON: the rows' manifest_digest."""
        return hashlib.sha256(self.json_text().encode()).hexdigest()[:16]
