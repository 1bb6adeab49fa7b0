"""Telemetry beside every run: the GPUs through NVML and the host through psutil, sampled on a
background thread, with phase marks so that energy is counted over the measured window only.

    with Sampler(0.5, pids=[server_pid]) as sampler:
        sampler.mark("warmup")      # warm-up requests
        ...
        sampler.mark("measured")    # the measured requests
        ...
        sampler.mark("idle")        # the run is over
    rows = sampler.rows(tr_id=..., run_id=...)   # the telemetry table's rows (storage.TELEMETRY_SCHEMA)

What is sampled, every `interval_s` (and once more at every mark, at start and at stop):
  per NVIDIA GPU (NVML, nvidia-ml-py): power draw in W (nvmlDeviceGetPowerUsage, mW; on recent
  GPUs a one-second average), the total energy counter in mJ where the GPU has one
  (nvmlDeviceGetTotalEnergyConsumption, Volta and newer; NotSupported elsewhere), utilization %
  (nvmlDeviceGetUtilizationRates.gpu: share of the last sample period with a kernel running),
  memory used in MiB (every process on the GPU, not only the server) and temperature in C.
  the host (psutil): system CPU % (busy share of all cores since the previous sample, from
  cpu_times deltas, so two samplers never disturb each other), and the server processes' resident
  memory (RSS, MiB) and CPU % (CPU seconds per wall second x 100: % of one core, as top shows it;
  over 100 when it uses several cores), each summed over the process and its descendants
  (`ollama serve` runs models in child `ollama runner` processes). Both CPU figures are rates over
  the time since the previous rate was taken; a sample less than 20 ms after it (a mark just after
  a tick) leaves them null, since CPU times advance in 10 ms clock ticks.

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
import importlib
import threading
import time
from typing import Any

try:
    import psutil
except ImportError:  # a project dependency; optional only so that the probe runs on a bare GPU machine
    psutil = None  # type: ignore[assignment]

MIB = 1024**2
MIN_RATE_INTERVAL_NS = 20_000_000  # CPU % over less than 20 ms (two clock ticks) is left null
IDLE = "idle"
WARMUP = "warmup"
MEASURED = "measured"
# the phases whose samples make up a run's measured window: single-agent runs mark 'measured';
# multi-agent runs mark 'concurrent' and 'solo' (both measured, back to back)
MEASURED_PHASES = frozenset({MEASURED, "concurrent", "solo"})

GPU_FIELDS = ("power_w", "energy_mj", "util_pct", "mem_used_mib", "temp_c")
HOST_FIELDS = ("cpu_pct", "server_rss_mib", "server_cpu_pct")


_NVML_LOCK = threading.Lock()
_NVML_SESSION: list[Any] = []  # [the pynvml module it was initialised through], once it was


def nvml_session() -> tuple[Any, str | None]:
    """(pynvml, None) with NVML initialised, or (None, why not). NVML stays initialised for the
    life of the process once it came up: nvmlInit can take a second on a GPU machine without the
    persistence daemon, too slow to pay before every run (NVML counts its inits, so the
    init/shutdown pairs elsewhere, e.g. vram.gpu_free_mib, leave this one standing). A failure is
    not remembered: the next sampler tries again."""
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
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


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
        self._procs: list[psutil.Process] = []
        self._proc_cpu: dict[tuple[int, float], float] = {}
        self._host_prev: tuple[float, float] | None = None
        self._host_prev_ns: int | None = None
        self._server_prev_ns: int | None = None

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
            self._init_procs()
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
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as err:
            self.gpu_reason = f"NVML: nvmlDeviceGetCount failed: {err}"
            return
        wanted = list(range(count)) if self.gpu_indices is None else self.gpu_indices
        for i in wanted:
            if not 0 <= i < count:
                self.add_note(f"GPU {i} asked for but NVML sees {count} GPU(s): not sampled")
                continue
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
            except Exception as err:
                self.add_note(f"GPU {i}: NVML handle failed ({err}): not sampled")
                continue
            try:
                name = _name(nvml.nvmlDeviceGetName(handle))
            except Exception:
                name = None
            self._handles[i] = handle
            self.gpus.append({"index": i, "name": name, "energy_counter": None})
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

    def _init_procs(self) -> None:
        if psutil is None:
            self.add_note("psutil is not importable: host CPU and server CPU/RSS not measured")
            return
        for pid in self.pids:
            try:
                self._procs.append(psutil.Process(pid))
            except psutil.Error as err:
                self.add_note(f"server process {pid} not found ({err}): its CPU/RSS unavailable")
        self._host_prev, self._host_prev_ns = self._cpu_busy_total(), time.perf_counter_ns()

    @staticmethod
    def _cpu_busy_total() -> tuple[float, float] | None:
        if psutil is None:
            return None
        try:
            ct = psutil.cpu_times()
        except Exception:
            return None
        total = sum(ct)
        idle = ct.idle + getattr(ct, "iowait", 0.0)
        return total - idle, total

    def _host_row(self) -> dict:
        t, t_ns = time.time(), time.perf_counter_ns()
        cpu_pct = None
        # CPU times advance in clock ticks (10 ms): a rate over a shorter interval (a mark right
        # after a tick) would be noise, so it is left null and the next sample covers the time
        long_enough = self._host_prev_ns is None or t_ns - self._host_prev_ns >= MIN_RATE_INTERVAL_NS
        if long_enough:
            now = self._cpu_busy_total()
            if now is not None and self._host_prev is not None and now[1] > self._host_prev[1]:
                cpu_pct = min(max((now[0] - self._host_prev[0]) / (now[1] - self._host_prev[1]) * 100.0, 0.0), 100.0)
            if now is not None and (self._host_prev is None or now[1] > self._host_prev[1]):
                self._host_prev, self._host_prev_ns = now, t_ns
        rss_mib, server_cpu = self._server_figures(t_ns)
        return self._row(t, t_ns, gpu_index=None, gpu_name=None, cpu_pct=cpu_pct, server_rss_mib=rss_mib,
                         server_cpu_pct=server_cpu)

    def _server_figures(self, t_ns: int) -> tuple[float | None, float | None]:
        if not self._procs:
            return None, None
        rate_due = self._server_prev_ns is None or t_ns - self._server_prev_ns >= MIN_RATE_INTERVAL_NS
        rss, cpu_delta, seen, alive = 0, 0.0, {}, False
        for root in self._procs:
            try:
                family = [root] + root.children(recursive=True)
            except psutil.Error:
                continue
            for p in family:
                try:
                    with p.oneshot():
                        key = (p.pid, p.create_time())
                        if key in seen:
                            continue  # counted already (two instances on one server)
                        mem = p.memory_info().rss
                        ct = p.cpu_times()
                except psutil.Error:
                    continue
                alive = True
                rss += mem
                cpu = ct.user + ct.system
                # a process first seen now was born after the previous sample: all its CPU is new
                cpu_delta += cpu - self._proc_cpu.get(key, 0.0)
                seen[key] = cpu
        if not alive:
            return None, None
        if not rate_due:
            return rss / MIB, None
        first = self._server_prev_ns is None
        dt_s = (t_ns - self._server_prev_ns) / 1e9 if not first else 0.0
        self._proc_cpu, self._server_prev_ns = seen, t_ns
        server_cpu = None if first or dt_s <= 0 else max(cpu_delta, 0.0) / dt_s * 100.0
        return rss / MIB, server_cpu

    # --- one tick ----------------------------------------------------------------------------

    def _rel_s(self, t_ns: int) -> float:
        return (t_ns - self._t0_ns) / 1e9

    def _row(self, t: float, t_ns: int, **values: Any) -> dict:
        row = {"sample": self._tick, "phase": self.phase, "t": dt.datetime.fromtimestamp(t, tz=dt.timezone.utc),
               "t_rel_s": self._rel_s(t_ns)}
        row.update({k: None for k in GPU_FIELDS + HOST_FIELDS})
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


def server_pids(instances: Any) -> tuple[list[int], str | None]:
    """The local server process ids of instances (EmbeddedInstance, OllamaProcessInstance have
    .pid), and a note when some instance has none (external servers, containers)."""
    pids, without = [], []
    for inst in instances:
        pid = getattr(inst, "pid", None)
        if pid:
            pids.append(int(pid))
        else:
            without.append(f"{getattr(inst, 'name', '?')} ({getattr(inst, 'provider', '?')})")
    note = (f"no local server process for {', '.join(without)}: server CPU/RSS not measured for it"
            if without else None)
    return pids, note
