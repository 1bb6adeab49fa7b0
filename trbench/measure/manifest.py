"""The environment manifest: what a published number was measured on, collected here (its model is
trbench.data.environment.Manifest)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from trbench.config.paths import PROJECT_ROOT
from trbench.data.budget_record import BudgetRecord
from trbench.data.environment import GitState, Gpu, Hardware, InstanceDescription, Manifest
from trbench.data.model_facts import ModelFacts
from trbench.measure import vram

if TYPE_CHECKING:
    from trbench.engines.instance import Instance
PACKAGES = ["trbench", "prefect", "xllamacpp", "httpx", "pydantic", "pandas", "pyarrow", "numpy",
            "great-expectations", "nvidia-ml-py", "docker"]


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> GitState:
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitState(commit=commit, dirty=bool(status) if status is not None else None)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[Gpu]:
    """NVIDIA GPUs (name, total memory) through NVML; [] without one."""
    return [Gpu(index=g.index, name=g.name, memory_total_mib=round(g.total_mib))
            for g in vram.gpu_free_mib() or []]


def hardware() -> Hardware:
    return Hardware(
        cpu=cpu_model(),
        cpu_cores_logical=os.cpu_count(),
        memory_gib=round(psutil.virtual_memory().total / (1 << 30), 1),
        gpus=gpus(),
        platform=platform.platform(),
        python=platform.python_version(),
    )


def server_version(url: str, backend: str, api_key_env: str | None = None, timeout_s: float = 3.0) -> str | None:
    """The version the server reports at its protocol's version endpoint (Ollama's /api/version,
    vLLM's /version); None where it has none (llama.cpp's server, the mock) or does not answer: the
    manifest records what the server says, never a guess."""
    import httpx  # noqa: PLC0415 (only where a TR run is recorded)

    from trbench.backends import backend_kind  # noqa: PLC0415
    from trbench.backends.auth import auth_headers  # noqa: PLC0415

    path = backend_kind(backend).version_path
    if path is None:
        return None
    try:
        r = httpx.get(f"{url}{path}", headers=auth_headers(api_key_env), timeout=timeout_s)
        found = r.json().get("version") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return str(found) if found else None


def describe_instance(inst: Instance, backend: str) -> InstanceDescription:
    """One instance as the manifest keeps it: where it is, its threads, how it batches and queues
    (embedded: slots; Ollama: num_parallel, max_queue; None where the provider does not say), and the
    version the server reports."""
    return InstanceDescription(name=inst.name, provider=inst.provider, url=inst.url, threads=inst.threads,
                               concurrency=inst.concurrency,
                               version=server_version(inst.url, backend, inst.api_key_env) if inst.url else None)


def collect(instances: list[InstanceDescription], models: dict[str, ModelFacts], command: str,
            spec: dict[str, Any], vram_budget: list[BudgetRecord]) -> Manifest:
    return Manifest(command=command, git=git_commit(), packages=package_versions(), hardware=hardware(),
                    instances=instances, models=models, spec=spec, vram_budget=vram_budget)


def digest(manifest: Manifest) -> str:
    """The manifest's digest (Manifest.digest): what every row it stamps carries."""
    return manifest.digest()
