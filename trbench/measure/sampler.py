"""Telemetry beside every run: the GPUs through NVML and the host through psutil, sampled on a
background thread, with phase marks so that energy is counted over the measured window only.

    with Sampler(0.5, pids=[server_pid]) as sampler:
        sampler.mark("warmup")      # warm-up requests
        ...
        sampler.mark("measured")    # the measured requests
        ...
        sampler.mark("idle")        # the run is over
    rows = sampler.rows(tr_id=..., run_id=...)   # the telemetry table's rows (data.store.TELEMETRY_SCHEMA)

What is sampled, every `interval_s` (and once more at every mark, at start and at stop):
  per NVIDIA GPU (NVML, nvidia-ml-py): power draw in W (nvmlDeviceGetPowerUsage, mW; on recent
  GPUs a one-second average), the total energy counter in mJ where the GPU has one
  (nvmlDeviceGetTotalEnergyConsumption, Volta and newer; NotSupported elsewhere), utilization %
  (nvmlDeviceGetUtilizationRates.gpu: share of the last sample period with a kernel running),
  memory used in MiB (every process on the GPU, not only the server) and temperature in C.
  the host (psutil, measure/host.py): system CPU %, and the server processes' resident memory
  (RSS, MiB) and CPU % (% of one core), summed over each process and its descendants.

Rows are long ("tidy") by source: each tick gives one row per sampled GPU (gpu_index set, GPU
columns filled, host columns null) and one host row (gpu_index null, host columns filled, GPU
columns null); the rows of one tick share `sample`. Every row has its own timestamps, taken as it
is read: `t` (time.time(), wall clock, UTC) and `t_rel_s` (time.perf_counter_ns() since the sampler
started: monotonic, what energy is integrated over).

Phases: every row carries the phase current when it was read. mark(label) switches the phase and
takes a sample at once, so each phase has a sample exactly at its start, which is also the end of
the phase before; energy (trbench/measure/energy.py) is counted from the first sample of the measured
phases to the first sample after them. A mark costs one synchronous sample (about a millisecond
per GPU, plus a /proc scan for the server's child processes).

Without a GPU (no nvidia-ml-py, no driver, NVML finds none) the sampler records the host rows
only, sets gpu_available=False and gpu_reason, and never raises; no GPU number is ever made up.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from trbench.data.rows import GPU_FIELDS, HOST_FIELDS
from trbench.measure.host import HostProbe
from trbench.measure.nvml import MIB, nvml_session, open_gpus

IDLE = "idle"
WARMUP = "warmup"
MEASURED = "measured"
# the phases whose samples make up a run's measured window: single-agent runs mark 'measured';
# multi-agent runs mark 'concurrent' and 'solo' (both measured, back to back)
MEASURED_PHASES = frozenset({MEASURED, "concurrent", "solo"})


class Sampler:
    """Samples GPUs and host every interval_s on a daemon thread between start() and stop()
    (or as a context manager). Thread-safe: mark() may be called from any thread."""

    def __init__(self, interval_s: float = 0.5, pids: list[int] | None = None,
                 gpu_indices: list[int] | None = None, phase: str = IDLE):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = float(interval_s)
        self.pids = list(dict.fromkeys(int(p) for p in (pids or []) if p))  # once each
        self.gpu_indices = list(gpu_indices) if gpu_indices is not None else None
        self.phase = phase
        self.gpu_available = False
        self.gpu_reason: str | None = "sampler not started"
        self.gpus: list[dict] = []  # index, name, energy_counter (True/False/None: not known yet)
        self.marks: list[dict] = []  # label, t, t_rel_s
        self.notes: list[str] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._rows: list[dict] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = False
        self._nvml: Any = None
        self._handles: dict[int, Any] = {}
        self._failed_reads: set[tuple[int, str]] = set()
        self._t0_ns = 0
        self._tick = 0
        self._host = HostProbe(self.pids, self.add_note)

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with self._lock:
            if self._running or self.stopped_at is not None:
                return
            self._init_gpus()
            self._t0_ns = time.perf_counter_ns()
            self.started_at = time.time()
            self._host.start()
            self._running = True
            self._sample_locked()
        self._thread = threading.Thread(target=self._loop, name="trbench-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and take a last sample. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(10.0, 4 * self.interval_s))
        with self._lock:
            if not self._running:
                return
            self._sample_locked()
            self._running = False
            self.stopped_at = time.time()

    def mark(self, label: str) -> None:
        """The phase `label` starts now: a sample is taken at once, carrying the new phase."""
        with self._lock:
            self.phase = label
            if not self._running:
                return
            self.marks.append({"label": label, "t": time.time(), "t_rel_s": self._rel_s(time.perf_counter_ns())})
            self._sample_locked()

    def _loop(self) -> None:
        interval_ns = int(self.interval_s * 1e9)
        next_ns = self._t0_ns + interval_ns
        while not self._stop.wait(max(next_ns - time.perf_counter_ns(), 0) / 1e9):
            with self._lock:
                if not self._running:
                    return
                self._sample_locked()
            next_ns += interval_ns
            now = time.perf_counter_ns()
            if next_ns <= now:  # fell behind (a slow read): skip the missed ticks, never burst
                next_ns = now + interval_ns

    # --- results -----------------------------------------------------------------------------

    def rows(self, **keys: Any) -> list[dict]:
        """The samples so far, each with `keys` (tr_id, run_id, ...) added."""
        with self._lock:
            return [{**keys, **r} for r in self._rows]

    @property
    def n_samples(self) -> int:
        return self._tick

    def add_note(self, text: str) -> None:
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    def note(self) -> str | None:
        """One line saying what is missing and why (None when everything was measured)."""
        parts = [] if self.gpu_available else [f"no GPU visible: GPU metrics unavailable ({self.gpu_reason})"]
        return "; ".join(parts + self.notes) or None

    # --- GPUs --------------------------------------------------------------------------------

    def _init_gpus(self) -> None:
        nvml, reason = nvml_session()
        if nvml is None:
            self.gpu_reason = reason
            return
        try:
            count, opened, notes = open_gpus(nvml, self.gpu_indices)
        except Exception as err:
            self.gpu_reason = f"NVML: nvmlDeviceGetCount failed: {err}"
            return
        for text in notes:
            self.add_note(text)
        for gpu in opened:
            self._handles[gpu.index] = gpu.handle
            self.gpus.append({"index": gpu.index, "name": gpu.name, "energy_counter": None})
        if not self._handles:
            self.gpu_reason = "NVML: no GPU found" if count == 0 else "NVML: none of the asked GPUs could be opened"
            return
        self._nvml = nvml
        self.gpu_available, self.gpu_reason = True, None

    def _read(self, index: int, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as err:
            if (index, what) not in self._failed_reads:
                self._failed_reads.add((index, what))
                self.add_note(f"GPU {index}: {what} unreadable ({type(err).__name__}: {err})")
            return None

    def _gpu_row(self, gpu: dict) -> dict:
        nvml, i = self._nvml, gpu["index"]
        h = self._handles[i]
        t, t_ns = time.time(), time.perf_counter_ns()
        mw = self._read(i, "power", nvml.nvmlDeviceGetPowerUsage, h)
        energy = None
        if gpu["energy_counter"] is not False:
            try:
                energy = int(nvml.nvmlDeviceGetTotalEnergyConsumption(h))
                gpu["energy_counter"] = True
            except Exception as err:
                not_supported = getattr(nvml, "NVMLError_NotSupported", None)
                if isinstance(not_supported, type) and isinstance(err, not_supported):
                    gpu["energy_counter"] = False
                    self.add_note(f"GPU {i}: no energy counter (NVML: {err}): its energy is the power integral")
                elif (i, "energy counter") not in self._failed_reads:
                    self._failed_reads.add((i, "energy counter"))
                    self.add_note(f"GPU {i}: energy counter unreadable ({type(err).__name__}: {err})")
        util = self._read(i, "utilization", nvml.nvmlDeviceGetUtilizationRates, h)
        mem = self._read(i, "memory", nvml.nvmlDeviceGetMemoryInfo, h)
        temp = self._read(i, "temperature", nvml.nvmlDeviceGetTemperature, h, getattr(nvml, "NVML_TEMPERATURE_GPU", 0))
        return self._row(t, t_ns, gpu_index=i, gpu_name=gpu["name"],
                         power_w=mw / 1000.0 if mw is not None else None, energy_mj=energy,
                         util_pct=float(util.gpu) if util is not None else None,
                         mem_used_mib=mem.used / MIB if mem is not None else None,
                         temp_c=float(temp) if temp is not None else None)

    # --- host --------------------------------------------------------------------------------

    def _host_row(self) -> dict:
        t, t_ns = time.time(), time.perf_counter_ns()
        return self._row(t, t_ns, gpu_index=None, gpu_name=None, **self._host.read(t_ns))

    # --- one tick ----------------------------------------------------------------------------

    def _rel_s(self, t_ns: int) -> float:
        return (t_ns - self._t0_ns) / 1e9

    def _row(self, t: float, t_ns: int, **values: Any) -> dict:
        row = {"sample": self._tick, "phase": self.phase, "t": dt.datetime.fromtimestamp(t, tz=dt.timezone.utc),
               "t_rel_s": self._rel_s(t_ns)}
        row.update({k: None for k in [*GPU_FIELDS, *HOST_FIELDS]})
        row.update(values)
        return row

    def _sample_locked(self) -> None:
        rows = []
        try:
            for gpu in self.gpus:
                rows.append(self._gpu_row(gpu))
            rows.append(self._host_row())
        except Exception as err:  # never let the sampler take the run down
            self.add_note(f"sampling failed once ({type(err).__name__}: {err})")
        self._rows.extend(rows)
        self._tick += 1

