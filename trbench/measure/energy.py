"""Energy per run (or load or embeddings step), from the telemetry rows of one run (trbench/measure/sampler.py), one definition.

The definitions are metrics.ENERGY_DEFINITIONS (printed by the report); in short:

  measured window  from the first sample of the measured phases (sampler.MEASURED_PHASES) to the
                   first sample after them (the sample taken at the mark that ends them); warm-ups,
                   model loads and idle time before or after are outside it
  energy_j         sum over the sampled GPUs of each GPU's energy over the window: the difference
                   of its energy counter (NVML total energy, mJ) where it has one, else the
                   trapezoidal integral of its power samples
  j_per_token      energy_j / output tokens of the run's ok measured requests (runs and load steps)
  j_per_text       energy_j / texts of an embeddings step's ok measured requests; j_per_input_token:
                   / their input tokens (an embedding has no output tokens)
  tokens_per_dollar  those tokens / cost; cost = window hours x price_per_gpu_hour x GPUs sampled
                   when price_per_gpu_hour is given (it wins), else energy kWh x price_per_kwh

Everything is computed from the stored rows alone, so it can be recomputed from the telemetry
table; with no GPU rows every energy figure is null (never estimated).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trbench.measure.host import server_pids
from trbench.measure.sampler import MEASURED_PHASES, Sampler

if TYPE_CHECKING:  # stdlib only at run time: bench/telemetry_probe.py runs on bare GPU machines
    from trbench.config.sections import TelemetrySpec

J_PER_KWH = 3.6e6

RUN_COLUMNS = ("energy_j", "energy_method", "energy_window_s", "j_per_token", "tokens_per_j", "tokens_per_dollar",
               "cost_basis", "gpu_power_w_mean", "gpu_mem_used_mib_max", "gpu_util_pct_mean", "cpu_pct_mean",
               "server_rss_mib_max", "telemetry_note")

EMBEDDING_COLUMNS = ("energy_j", "energy_method", "energy_window_s", "j_per_text", "j_per_input_token",
                     "gpu_power_w_mean", "gpu_mem_used_mib_max", "gpu_util_pct_mean", "cpu_pct_mean",
                     "server_rss_mib_max", "telemetry_note")


def segments(rows: list[dict], phases: Iterable[str] = MEASURED_PHASES) -> list[tuple[int, int]]:
    """(first, last) indices into time-ordered rows of one source for each stretch of the measured
    phases; `last` is the first row after the stretch (the boundary sample) when there is one."""
    phases = set(phases)
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(rows):
        if rows[i]["phase"] in phases:
            j = i
            while j + 1 < len(rows) and rows[j + 1]["phase"] in phases:
                j += 1
            out.append((i, min(j + 1, len(rows) - 1)))
            i = j + 1
        else:
            i += 1
    return out


def trapezoid(rows: list[dict], field: str = "power_w") -> float | None:
    """Integral over t_rel_s of a field (W -> J) by the trapezoidal rule, skipping missing values."""
    pts = [(r["t_rel_s"], r[field]) for r in rows if _num(r.get(field))]
    if len(pts) < 2:
        return None
    return sum((t1 - t0) * (y0 + y1) / 2.0 for (t0, y0), (t1, y1) in zip(pts, pts[1:]))


@dataclass(frozen=True)
class GpuEnergy:
    gpu_index: int
    window_s: float
    counter_j: float | None  # energy counter difference over the window
    integral_j: float | None  # trapezoidal integral of the power samples over the window
    energy_j: float | None  # the one used: counter_j if known, else integral_j
    method: str | None


def _by_source(rows: Iterable[dict]) -> tuple[dict[int, list[dict]], list[dict]]:
    gpus: dict[int, list[dict]] = defaultdict(list)
    host: list[dict] = []
    for r in rows:
        g = r.get("gpu_index")
        if g is None or g != g:  # None or NaN (a pandas round trip)
            host.append(r)
        else:
            gpus[int(g)].append(r)
    key = lambda r: r["t_rel_s"]  # noqa: E731
    return {g: sorted(v, key=key) for g, v in sorted(gpus.items())}, sorted(host, key=key)


def _counter_j(seg: list[dict]) -> float | None:
    a, b = seg[0].get("energy_mj"), seg[-1].get("energy_mj")
    if a is None or b is None or a != a or b != b or b < a:  # missing, or the counter was reset
        return None
    return (b - a) / 1000.0


def gpu_energy(rows: Iterable[dict]) -> list[GpuEnergy]:
    """Each sampled GPU's energy over the measured window, by both methods where possible."""
    out = []
    for g, grows in _by_source(rows)[0].items():
        segs = [grows[a:b + 1] for a, b in segments(grows)]
        if not segs:
            continue
        window = sum(s[-1]["t_rel_s"] - s[0]["t_rel_s"] for s in segs)
        counters = [_counter_j(s) for s in segs]
        integrals = [trapezoid(s) if len(s) > 1 else 0.0 for s in segs]
        counter = _sum_all(counters)
        integral = _sum_all(integrals)
        used, method = (counter, "energy counter") if counter is not None else (
            (integral, "power integral") if integral is not None else (None, None))
        out.append(GpuEnergy(gpu_index=g, window_s=window, counter_j=counter, integral_j=integral, energy_j=used,
                             method=method))
    return out


def _sum_all(values: list[float | None]) -> float | None:
    """The sum where every value is known, else None."""
    known = [v for v in values if v is not None]
    return sum(known) if len(known) == len(values) else None


def window_s(rows: Iterable[dict]) -> float | None:
    """Length of the measured window in seconds, from the host samples."""
    host = _by_source(rows)[1]
    segs = segments(host)
    if not segs:
        return None
    return sum(host[b]["t_rel_s"] - host[a]["t_rel_s"] for a, b in segs)


def interval_mean(rows: list[dict], field: str) -> float | None:
    """Time-weighted mean of a field over the measured window. Utilization and CPU % describe the
    interval before their sample, so within a stretch each sample after the first (through the
    boundary sample) is weighted by the time since the sample before it; the short intervals
    that marks create weigh little. A stretch of one sample counts that sample alone."""
    total = weight = 0.0
    single: list[float] = []
    for a, b in segments(rows):
        if b == a:
            if _num(rows[a].get(field)):
                single.append(rows[a][field])
            continue
        for k in range(a + 1, b + 1):
            v, dt_s = rows[k].get(field), rows[k]["t_rel_s"] - rows[k - 1]["t_rel_s"]
            if _num(v) and dt_s > 0:
                total += v * dt_s
                weight += dt_s
    if weight > 0:
        return total / weight
    return sum(single) / len(single) if single else None


def _num(x: object) -> bool:
    return x is not None and x == x  # not None, not NaN


def _mean(values: list) -> float | None:
    v = [x for x in values if _num(x)]
    return sum(v) / len(v) if v else None


def _max(values: list) -> float | None:
    v = [x for x in values if _num(x)]
    return max(v) if v else None


def cost(energy_j: float | None, window: float | None, n_gpus: int, price_per_kwh: float | None,
         price_per_gpu_hour: float | None) -> tuple[float | None, str | None]:
    """(cost in the prices' currency, how it was priced); price_per_gpu_hour wins over price_per_kwh."""
    if price_per_gpu_hour is not None:
        if not window or n_gpus <= 0:
            return None, None
        return window / 3600.0 * price_per_gpu_hour * n_gpus, (
            f"{window:.3f} s x {n_gpus} GPU{'' if n_gpus == 1 else 's'} x {price_per_gpu_hour:g}/GPU-hour")
    if price_per_kwh is not None:
        if energy_j is None:
            return None, None
        return energy_j / J_PER_KWH * price_per_kwh, f"{energy_j:.3f} J = {energy_j / J_PER_KWH:.6g} kWh x {price_per_kwh:g}/kWh"
    return None, None


def run_energy(rows: list[dict], output_tokens: int | None, price_per_kwh: float | None = None,
               price_per_gpu_hour: float | None = None, note: str | None = None) -> dict:
    """The run table's energy and telemetry columns (RUN_COLUMNS) from one run's telemetry rows.
    output_tokens: output tokens of the run's ok measured requests."""
    gpus, host = _by_source(rows)
    per_gpu = gpu_energy(rows)
    win = window_s(rows)
    if win is None and per_gpu:
        win = max(g.window_s for g in per_gpu)
    notes = [note] if note else []
    energy = None
    method = None
    if per_gpu:
        energy = _sum_all([g.energy_j for g in per_gpu])
        if energy is not None:
            methods = {g.method for g in per_gpu}
            method = methods.pop() if len(methods) == 1 else ", ".join(f"GPU {g.gpu_index}: {g.method}" for g in per_gpu)
        else:
            missing = [str(g.gpu_index) for g in per_gpu if g.energy_j is None]
            notes.append(f"energy unknown: GPU {', '.join(missing)} gave neither energy counter nor power readings")
    elif gpus:
        notes.append("no GPU sample inside a measured phase: energy unknown")
    tokens = output_tokens or 0
    run_cost, basis = cost(energy, win, len(gpus), price_per_kwh, price_per_gpu_hour)
    mem_per_tick: dict[int, float] = defaultdict(float)
    for g in gpus.values():
        for r in g:
            if _num(r.get("mem_used_mib")):
                mem_per_tick[r["sample"]] += r["mem_used_mib"]
    utils = [interval_mean(g, "util_pct") for g in gpus.values()]
    return {
        "energy_j": energy,
        "energy_method": method,
        "energy_window_s": win,
        "j_per_token": energy / tokens if energy is not None and tokens > 0 else None,
        "tokens_per_j": tokens / energy if energy and tokens > 0 else None,
        "tokens_per_dollar": tokens / run_cost if run_cost and tokens > 0 else None,
        "cost_basis": basis,
        "gpu_power_w_mean": energy / win if energy is not None and win else None,
        "gpu_mem_used_mib_max": max(mem_per_tick.values()) if mem_per_tick else None,
        "gpu_util_pct_mean": _mean(utils),
        "cpu_pct_mean": interval_mean(host, "cpu_pct"),
        "server_rss_mib_max": _max([r.get("server_rss_mib") for r in host]),
        "telemetry_note": "; ".join(notes) or None,
    }


def no_telemetry(reason: str, columns: tuple[str, ...] = RUN_COLUMNS) -> dict:
    """The columns of a run or step that has no telemetry (it did not start, or sampling is off)."""
    return {**{c: None for c in columns}, "telemetry_note": reason}


def embedding_energy(rows: list[dict], texts: int | None, input_tokens: int | None, note: str | None = None) -> dict:
    """An embeddings step's energy and telemetry columns (EMBEDDING_COLUMNS): run_energy's, with the energy
    per embedded text and per input token instead of per output token (an embedding has none)."""
    run = run_energy(rows, None, note=note)
    e = run["energy_j"]
    per_text = {"j_per_text": e / texts if e is not None and texts else None,
                "j_per_input_token": e / input_tokens if e is not None and input_tokens else None}
    return {c: per_text[c] if c in per_text else run[c] for c in EMBEDDING_COLUMNS}


# --- beside a run: the sampler for it, and its columns afterwards ----------------------------


def sampler_for(telemetry: TelemetrySpec, instances: list[Any], shared_lanes: bool = False) -> Sampler | None:
    """A (not yet started) sampler for one run on these instances; None when the spec turns
    telemetry off. shared_lanes: other runs share the GPUs and host meanwhile (parallel mode)."""
    if not telemetry.enabled:
        return None
    pids, note = server_pids(instances)
    sampler = Sampler(telemetry.interval_s, pids, telemetry.gpu_indices)
    if note:
        sampler.add_note(note)
    if shared_lanes:
        sampler.add_note("parallel mode: GPUs and host are shared with the other lanes' runs at the same time, "
                         "so GPU energy, power and utilization cover them too")
    return sampler


TELEMETRY_OFF = "telemetry off (spec telemetry.enabled: false)"


def _sampled(sampler: Sampler, row: dict) -> list[dict]:
    return sampler.rows(tr_id=row["tr_id"], run_id=row["run_id"], attempt=row["attempt"], model=row["model"])


def finish(sampler: Sampler | None, run_row: dict, output_tokens: int | None,
           telemetry: TelemetrySpec) -> list[dict] | None:
    """Put the energy and telemetry columns into run_row (a run's or a load step's); the telemetry rows to
    store (None when telemetry is off). output_tokens: output tokens of the ok measured requests."""
    if sampler is None:
        run_row.update(no_telemetry(TELEMETRY_OFF))
        return None
    rows = _sampled(sampler, run_row)
    run_row.update(run_energy(rows, output_tokens, telemetry.price_per_kwh, telemetry.price_per_gpu_hour,
                              sampler.note()))
    return rows


def finish_embeddings(sampler: Sampler | None, step_row: dict) -> list[dict] | None:
    """finish for an embeddings step: its columns from its texts and input tokens (EmbeddingFigures)."""
    if sampler is None:
        step_row.update(no_telemetry(TELEMETRY_OFF, EMBEDDING_COLUMNS))
        return None
    rows = _sampled(sampler, step_row)
    step_row.update(embedding_energy(rows, step_row.get("texts_total"), step_row.get("tokens_total"), sampler.note()))
    return rows
