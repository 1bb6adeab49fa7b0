"""The host through psutil: system CPU %, and the server processes' resident memory and CPU %,
each summed over the process and its descendants (`ollama serve` runs models in child `ollama
runner` processes).

System CPU % is the busy share of all cores since the previous reading, from cpu_times deltas, so
two probes never disturb each other. Server CPU % is CPU seconds per wall second x 100: % of one
core, as top shows it; over 100 when it uses several cores. Both are rates over the time since the
previous rate was taken; a reading less than 20 ms after it leaves them null, since CPU times
advance in 10 ms clock ticks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trbench.engines.instance import Instance

try:
    import psutil
except ImportError:  # a project dependency; optional only so that the probe runs on a bare GPU machine
    psutil = None  # type: ignore[assignment]

MIB = 1024**2
MIN_RATE_INTERVAL_NS = 20_000_000  # CPU % over less than 20 ms (two clock ticks) is left null


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


class HostProbe:
    """Reads the host and the server processes `pids`; what it cannot read goes to `note`.
    Not thread-safe: the sampler calls it under its lock."""

    def __init__(self, pids: Iterable[int], note: Callable[[str], None]):
        self.pids = list(pids)
        self._note = note
        self._procs: list[Any] = []
        self._proc_cpu: dict[tuple[int, float], float] = {}
        self._host_prev: tuple[float, float] | None = None
        self._host_prev_ns: int | None = None
        self._server_prev_ns: int | None = None

    def start(self) -> None:
        if psutil is None:
            self._note("psutil is not importable: host CPU and server CPU/RSS not measured")
            return
        for pid in self.pids:
            try:
                self._procs.append(psutil.Process(pid))
            except psutil.Error as err:
                self._note(f"server process {pid} not found ({err}): its CPU/RSS unavailable")
        self._host_prev, self._host_prev_ns = _cpu_busy_total(), time.perf_counter_ns()

    def read(self, t_ns: int) -> dict[str, float | None]:
        """cpu_pct, server_rss_mib and server_cpu_pct at perf_counter_ns() t_ns."""
        rss_mib, server_cpu = self._server_figures(t_ns)
        return {"cpu_pct": self._cpu_pct(t_ns), "server_rss_mib": rss_mib, "server_cpu_pct": server_cpu}

    def _cpu_pct(self, t_ns: int) -> float | None:
        # a rate over less than two clock ticks (a mark right after a tick) would be noise: it is
        # left null and the next reading covers the time
        if self._host_prev_ns is not None and t_ns - self._host_prev_ns < MIN_RATE_INTERVAL_NS:
            return None
        now, prev = _cpu_busy_total(), self._host_prev
        cpu_pct = None
        if now is not None and prev is not None and now[1] > prev[1]:
            cpu_pct = min(max((now[0] - prev[0]) / (now[1] - prev[1]) * 100.0, 0.0), 100.0)
        if now is not None and (prev is None or now[1] > prev[1]):
            self._host_prev, self._host_prev_ns = now, t_ns
        return cpu_pct

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
                # a process first seen now was born after the previous reading: all its CPU is new
                cpu_delta += cpu - self._proc_cpu.get(key, 0.0)
                seen[key] = cpu
        if not alive:
            return None, None
        if not rate_due:
            return rss / MIB, None
        prev_ns = self._server_prev_ns
        first = prev_ns is None
        dt_s = (t_ns - prev_ns) / 1e9 if prev_ns is not None else 0.0
        self._proc_cpu, self._server_prev_ns = seen, t_ns
        server_cpu = None if first or dt_s <= 0 else max(cpu_delta, 0.0) / dt_s * 100.0
        return rss / MIB, server_cpu


def server_pids(instances: Iterable[Instance]) -> tuple[list[int], str | None]:
    """The local server process ids of instances (those with a local process: embedded, ollama-process),
    and a note when some instance has none (external servers, containers)."""
    pids, without = [], []
    for inst in instances:
        pid = inst.pid
        if pid:
            pids.append(int(pid))
        else:
            without.append(f"{inst.name} ({inst.provider})")
    note = (f"no local server process for {', '.join(without)}: server CPU/RSS not measured for it"
            if without else None)
    return pids, note
