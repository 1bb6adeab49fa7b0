"""The NVIDIA GPUs through NVML (nvidia-ml-py): opening them, and their memory. The telemetry
sampler (measure/sampler.py) reads its power, energy, utilization and temperature figures through
the GPUs opened here; the VRAM budget reads gpu_free_mib.

Without nvidia-ml-py, a driver or a GPU nothing here raises: the answer says there is none."""

from __future__ import annotations

import importlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from trbench.prose import count as plural

MIB = 1024**2

_NVML_LOCK = threading.Lock()
_NVML_SESSION: list[Any] = []  # [the pynvml module it was initialised through], once it was


@dataclass(frozen=True)
class OpenGpu:
    index: int
    handle: Any
    name: str | None


def nvml_session() -> tuple[Any, str | None]:
    """(pynvml, None) with NVML initialised, or (None, why not). NVML stays initialised for the
    life of the process once it came up: nvmlInit can take a second on a GPU machine without the
    persistence daemon, too slow to pay before every run (NVML counts its inits, so the
    init/shutdown pair in gpu_free_mib leaves this one standing). A failure is not remembered:
    the next sampler tries again."""
    try:
        nvml = importlib.import_module("pynvml")
    except Exception as err:
        return None, f"nvidia-ml-py (pynvml) is not importable: {err}"
    with _NVML_LOCK:
        if _NVML_SESSION and _NVML_SESSION[0] is nvml:
            return nvml, None
        try:
            nvml.nvmlInit()
        except Exception as err:  # NVMLError_LibraryNotFound, _DriverNotLoaded, _NoPermission...
            return None, f"NVML: {err}"
        _NVML_SESSION[:] = [nvml]
        return nvml, None


def _name(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)  # older nvidia-ml-py: bytes


def open_gpus(nvml: Any, indices: list[int] | None = None) -> tuple[int, list[OpenGpu], list[str]]:
    """(how many GPUs NVML sees, the asked ones that opened, a note for each that did not).
    indices None: all. NVML numbers GPUs as the driver does, ignoring CUDA_VISIBLE_DEVICES.
    Raises what nvmlDeviceGetCount raises; a GPU that fails alone (lost, no access) is left out."""
    count = int(nvml.nvmlDeviceGetCount())
    opened, notes = [], []
    for i in range(count) if indices is None else indices:
        if not 0 <= i < count:
            notes.append(f"GPU {i} asked for but NVML sees {plural(count, 'GPU')}: not sampled")
            continue
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
        except Exception as err:
            notes.append(f"GPU {i}: NVML handle failed ({err}): not sampled")
            continue
        try:
            name = _name(nvml.nvmlDeviceGetName(handle))
        except Exception:
            name = None
        opened.append(OpenGpu(i, handle, name))
    return count, opened, notes


class GpuMemory(BaseModel):
    """One GPU's memory as NVML reports it, in MiB."""

    index: int
    name: str | None
    total_mib: float
    free_mib: float
    used_mib: float

    @property
    def label(self) -> str:
        return f"GPU {self.index}" + (f" ({self.name})" if self.name else "")


def gpu_free_mib() -> list[GpuMemory] | None:
    """Each NVIDIA GPU's memory via NVML: index, name, total_mib, free_mib, used_mib.

    None when there is no NVIDIA GPU, driver or pynvml (nvidia-ml-py); never raises. NVML is
    initialised and shut down again around the reading (the sampler's session, if any, stays).
    """
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded...
        return None
    gpus: list[GpuMemory] = []
    try:
        for gpu in open_gpus(nvml)[1]:
            try:
                mem = nvml.nvmlDeviceGetMemoryInfo(gpu.handle)  # bytes: total, free, used
            except Exception:  # a lost or inaccessible GPU: report the others
                continue
            gpus.append(GpuMemory(index=gpu.index, name=gpu.name, total_mib=mem.total / MIB, free_mib=mem.free / MIB,
                                  used_mib=mem.used / MIB))
    except Exception:
        return None
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass
    return gpus or None


def gpu_memory_snapshot() -> str | None:
    """Used/free MiB per GPU as one JSON string, for the failure log; None without a GPU."""
    gpus = gpu_free_mib()
    if gpus is None:
        return None
    return json.dumps([{"index": g.index, "used_mib": round(g.used_mib), "free_mib": round(g.free_mib)} for g in gpus])
