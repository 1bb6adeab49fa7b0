"""The environment manifest: what a published number was measured on."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from trbench.config.paths import PROJECT_ROOT
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


def git_commit() -> dict[str, str | bool | None]:
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpus() -> list[dict]:
    """NVIDIA GPUs (name, total memory) through NVML; [] without one."""
    return [{"index": g["index"], "name": g["name"], "memory_total_mib": round(g["total_mib"])}
            for g in vram.gpu_free_mib() or []]


def hardware() -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "gpus": gpus(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def describe_instance(inst: Instance) -> dict:
    """One instance as the manifest keeps it: where it is, its threads, and how it batches and queues
    (embedded: slots; Ollama: num_parallel, max_queue; None where the provider does not say)."""
    return {"name": inst.name, "provider": inst.provider, "url": inst.url, "threads": inst.threads,
            "concurrency": inst.concurrency}


def collect(instances: list[dict], models: dict[str, dict], command: str) -> dict:
    return {
        "command": command,
        "git": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
        "instances": instances,
        "models": models,
    }


def digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]
