"""The synthetic workload (spec `synthetic:`): requests of an exact prompt and output length, one
at a time, per point of prompt_tokens x output_tokens x depth, and the report's llama-bench view of
them (pp512, tg128, pp512 @ d4096 with mean +- stddev over runs).

Prompt length, by the server's own count:
- a server with llama.cpp's /tokenize: the prompt is sent as token ids (drawn from the server's own
  tokenization of a fixed English text), so it is exactly depth + prompt_tokens long; llama.cpp adds no
  BOS to a token-id prompt, and its usage.prompt_tokens checks every request.
- otherwise (Ollama has no tokenize endpoint): text, calibrated against the prompt tokens the server
  reports (two probes give tokens per word; each request's count corrects the next), and each request's
  achieved length recorded.
Each measured prompt opens, after the depth, with two leading tokens (words) no earlier prompt of the
model had there, so nothing of it is cached; the depth is one shared prefix, put in the cache by a
warm-up request before each run of its point. Output length: `ignore_eos` with max_tokens on an
OpenAI-compatible server (llama.cpp, vLLM); Ollama cannot be made to ignore end-of-sequence, so a
request that stopped early is counted as such and left out of the decode rates.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import numpy as np
import pandas as pd
from pydantic import BaseModel

from trbench.backends import ChatRequest, RawExchange, WireClient, backend_kind, make_client
from trbench.backends.auth import auth_headers
from trbench.config.spec import MatrixSpec
from trbench.config.synthetic_section import SyntheticSpec
from trbench.data import store
from trbench.prose import count
from trbench.data.cells import Cell
from trbench.data.rows import RequestFigures, SynRequestRow, SynRunRow, _ServerRaw
from trbench.engines import Instance, ollama_api
from trbench.measure import metrics
from trbench.run import progress
from trbench.run.single import RunCancelled, utc
from trbench.measure.figure import Figure
from trbench.workloads.protocol import Measured, Planned, ReportPart

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession

KIND = "synthetic"  # store.TABLES: syn_requests/, syn_runs/

# what the prompts are made of: plain English, so a text prompt reads as text and its words tokenize alike
FILLER = (
    "The river runs past the old mill and under the stone bridge before it reaches the town. In spring the water "
    "is high and brown, and the children watch it from the bank while their parents work in the fields. Every "
    "morning the baker opens his shop at six, and the smell of fresh bread fills the narrow street. The market "
    "comes on Thursday, when farmers bring apples, cheese, eggs and honey from the hills. A small train stops at "
    "the station twice a day, once at noon and once in the evening, and few people ever get off. The school has "
    "four rooms, a library with a green door, and a garden where the pupils grow beans and flowers. In winter "
    "the snow covers the roofs, the lake freezes, and the whole valley becomes quiet under a grey sky."
)
_PROBE_WORDS = (32, 96)  # the two text lengths a calibration sends


def point_label(pp: int, tg: int, depth: int) -> str:
    """llama-bench's name of one point: pp512+tg128, pp512+tg128 @ d4096."""
    return f"pp{pp}+tg{tg}" + (f" @ d{depth}" if depth else "")


class SynPlan(BaseModel):
    """One run of one point of one model."""

    tr_id: str
    run_id: str
    cell: Cell
    pp: int
    tg: int
    depth: int
    run_index: int
    instance: str
    instance_url: str

    @property
    def label(self) -> str:
        return point_label(self.pp, self.tg, self.depth)


def plan_runs(spec: MatrixSpec, inst: Instance) -> list[SynPlan]:
    """Per model, run by run, every point: a point's runs are spread over the whole measurement, so a
    slow stretch of the machine does not fall on one point's runs only."""
    syn = _section(spec)
    out = []
    for model in syn.models or spec.models:
        cell = next(c for c in spec.cells() if c.model == model)
        for run_index, depth, pp, tg in itertools.product(range(syn.runs), syn.depth, syn.prompt_tokens,
                                                          syn.output_tokens):
            run_id = f"{store.slug(model)}_pp{pp}_tg{tg}_d{depth}_r{run_index:02d}"
            out.append(SynPlan(tr_id=spec.tr_id, run_id=run_id, cell=cell, pp=pp, tg=tg, depth=depth,
                               run_index=run_index, instance=inst.name, instance_url=inst.url))
    return out


def _section(spec: MatrixSpec) -> SyntheticSpec:
    assert spec.synthetic is not None  # planned only from a spec that has the section
    return spec.synthetic


# --- prompts of an exact length -------------------------------------------------------------------


class TokenPrompts:
    """Token-id prompts from the server's own tokenizer (llama.cpp /tokenize): exact by construction."""

    method = "token_ids"

    def __init__(self, ids: list[int]) -> None:
        self.pool = ids
        # leading tokens: each distinct token once, never the depth's first (a depth-0 prompt must share nothing)
        self.leads = [t for t in dict.fromkeys(ids) if t != ids[0]]
        self._k = 0

    @classmethod
    def of_server(cls, url: str, api_key_env: str | None) -> TokenPrompts | None:
        """From llama.cpp's /tokenize; None where the server has no such endpoint (Ollama)."""
        try:
            r = httpx.post(f"{url}/tokenize", json={"content": FILLER}, timeout=30, headers=auth_headers(api_key_env))
            ids = r.json().get("tokens") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(ids, list) or len(ids) < 16 or not all(isinstance(t, int) for t in ids):
            return None
        return cls(ids)

    def _cycle(self, n: int, offset: int) -> list[int]:
        return [self.pool[(offset + i) % len(self.pool)] for i in range(n)]

    def prompt(self, pp: int, depth: int) -> tuple[ChatRequest, str]:
        """The request's prompt (depth prefix, then pp tokens opening with this request's leading pair)
        and its id; the request's other fields are the caller's."""
        k, self._k = self._k, self._k + 1
        n = len(self.leads)
        lead = [self.leads[k % n], self.leads[(k // n) % n]][:pp]
        ids = self._cycle(depth, 0) + lead + self._cycle(pp - len(lead), k)
        return ChatRequest(model="", messages=[], prompt_ids=ids, max_tokens=1), f"k{k}"


@dataclass
class TextPrompts:
    """Text prompts calibrated against the prompt tokens the server reports (no tokenize endpoint)."""

    slope: float  # prompt tokens per filler word
    offset: float  # prompt tokens of an empty prompt (BOS, template)
    method: ClassVar[str] = "calibrated"
    words: list[str] = field(default_factory=lambda: FILLER.split())
    correction: dict[tuple[int, int], int] = field(default_factory=dict)  # (pp, depth) -> words added
    _k: int = 0

    @classmethod
    def calibrate(cls, client: WireClient, model: str, options: dict[str, Any]) -> TextPrompts:
        counts = []
        for n in _PROBE_WORDS:
            ex = client.chat(ChatRequest(model=model, messages=[], prompt=_words(FILLER.split(), n, 0), max_tokens=1,
                                         **options))
            if ex.status != "ok" or not ex.prompt_tokens:
                raise RuntimeError(f"calibrating prompt lengths: the server answered {ex.status} "
                                   f"({ex.error_message}) with no prompt token count")
            counts.append(ex.prompt_tokens)
        slope = max((counts[1] - counts[0]) / (_PROBE_WORDS[1] - _PROBE_WORDS[0]), 0.1)
        return cls(slope=slope, offset=counts[0] - slope * _PROBE_WORDS[0])

    def _n_words(self, tokens: float) -> int:
        return max(1, round((tokens - self.offset) / self.slope))

    def prompt(self, pp: int, depth: int) -> tuple[ChatRequest, str]:
        """depth's words (the same every time), then this request's number and pp's words: the word counts
        from the calibration, corrected by what the server counted for this point's last prompt."""
        k, self._k = self._k, self._k + 1
        prefix = round(depth / self.slope) if depth else 0
        unique = max(1, self._n_words(depth + pp) - prefix + self.correction.get((pp, depth), 0))
        head = _words(self.words, prefix, 0) + " " if prefix else ""
        text = f"{head}{k} " + _words(self.words, unique - 1, k)
        return ChatRequest(model="", messages=[], prompt=text.rstrip(), max_tokens=1), f"k{k}"

    def observe(self, pp: int, depth: int, achieved: int | None) -> None:
        """Correct the next prompt of this point by what the server counted for this one."""
        if achieved is not None:
            step = round((depth + pp - achieved) / self.slope)
            self.correction[(pp, depth)] = self.correction.get((pp, depth), 0) + step


def _words(words: list[str], n: int, offset: int) -> str:
    return " ".join(words[(offset + i) % len(words)] for i in range(n))


Prompts = TokenPrompts | TextPrompts


# --- one run --------------------------------------------------------------------------------------


def _keys(spec: MatrixSpec, plan: SynPlan) -> dict[str, Any]:
    c = plan.cell
    return {"tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": 1, "model": c.model, "provider": spec.provider,
            "backend": spec.backend, "instance": plan.instance, "instance_url": plan.instance_url,
            "num_gpu": c.num_gpu, "num_ctx": c.num_ctx, "point": plan.label, "prompt_tokens_asked": plan.pp,
            "output_tokens_asked": plan.tg, "depth": plan.depth, "run_index": plan.run_index}


def _options(spec: MatrixSpec, cell: Cell) -> dict[str, Any]:
    return {"temperature": cell.temperature, "num_ctx": cell.num_ctx, "num_gpu": cell.num_gpu, "seed": spec.seed}


def send(spec: MatrixSpec, plan: SynPlan, client: WireClient, prompts: Prompts, index: int, warmup: bool,
         tg: int) -> dict[str, Any]:
    """One request of the plan's point, as its row."""
    req, prompt_id = prompts.prompt(plan.pp, plan.depth)
    forced = not backend_kind(spec.backend).loads_per_request  # OpenAI-compatible servers take ignore_eos
    req = req.model_copy(update={"model": plan.cell.model, "max_tokens": tg, "ignore_eos": forced,
                                 **_options(spec, plan.cell)})
    sent = time.time()
    ex = client.chat(req)
    if isinstance(prompts, TextPrompts) and ex.status == "ok":
        prompts.observe(plan.pp, plan.depth, ex.prompt_tokens)
    return request_row(_keys(spec, plan), index, warmup, prompt_id, prompts.method, sent, ex, plan, tg, forced)


def request_row(keys: dict[str, Any], index: int, warmup: bool, prompt_id: str, method: str, sent: float,
                ex: RawExchange, plan: SynPlan, tg: int, forced: bool) -> dict[str, Any]:
    target = "prefix" if plan.depth else "cold"
    m = metrics.derive(ex, asked="cold" if not plan.depth else None)
    ok = ex.status == "ok"
    return SynRequestRow(
        **keys, request_index=index, is_warmup=warmup, prompt_id=prompt_id, sent_at=utc(sent), prompt_method=method,
        cache_target=target, cache_state=m.cache_state, ignore_eos=forced,
        status=ex.status, error_kind=ex.error_kind, error_message=ex.error_message, http_status=ex.http_status,
        finish_reason=ex.finish_reason,
        **m.model_dump(include=set(RequestFigures.model_fields)),
        **{k: getattr(ex, k) for k in _ServerRaw.model_fields},
        prefill_tps=metrics.prefill_rate(ex.prompt_tokens, ex.cached_tokens, ex.server_prefill_ms),
        prefill_tps_client=metrics.prefill_rate_client(ex.prompt_tokens, ex.cached_tokens, m.ttft_ms),
        server_prefill_tps_reported=ex.server_prefill_tps_reported,
        input_exact=ex.prompt_tokens == plan.depth + plan.pp if ok and ex.prompt_tokens is not None else None,
        stopped_early=(m.output_tokens or 0) < tg if ok else None,
    ).model_dump()


def run_row(keys: dict[str, Any], rows: list[dict[str, Any]], started: float, wall_s: float,
            digest: str) -> dict[str, Any]:
    """A run's figures: prefill over its ok measured requests, decode over the full-length ones only."""
    measured = [r for r in rows if not r["is_warmup"]]
    ok = [r for r in measured if r["status"] == "ok"]
    full = [r for r in ok if not r["stopped_early"]]
    off = [r for r in ok if r["input_exact"] is False]
    prompts = [r["prompt_tokens"] for r in ok if r["prompt_tokens"] is not None]
    outputs = [r["output_tokens"] for r in ok if r["output_tokens"] is not None]
    errors = len(measured) - len(ok)
    reason = None if measured and not errors else f"{errors} of {count(len(measured), 'measured request')} failed"
    return SynRunRow(
        **keys, started_at=utc(started), wall_s=wall_s, n_requests=len(measured), n_warmup=len(rows) - len(measured),
        n_ok=len(ok), n_errors=errors, n_stopped_early=len(ok) - len(full), n_input_off=len(off),
        input_exact=not off, prompt_tokens_min=min(prompts, default=None), prompt_tokens_max=max(prompts, default=None),
        output_tokens_min=min(outputs, default=None), output_tokens_max=max(outputs, default=None),
        prefill_tps_mean=metrics.mean([r["prefill_tps"] for r in ok]),
        prefill_tps_client_mean=metrics.mean([r["prefill_tps_client"] for r in ok]),
        decode_tps_mean=metrics.mean([r["decode_tps"] for r in full]),
        decode_tps_client_mean=metrics.mean([r["decode_tps_client"] for r in full]),
        ttft_ms_mean=metrics.mean([r["ttft_ms"] for r in ok]),
        valid=reason is None, invalid_reason=reason, manifest_digest=digest,
    ).model_dump()


def measure_run(session: TRSession, plan: SynPlan, client: WireClient, prompts: Prompts, warmups: int) -> dict:
    """One run of one point, written before it returns: `warmups` model warm-ups (the model's first
    run), the depth put in the cache (a point with depth), then the measured requests."""
    s, syn = session, _section(session.spec)
    session.gate.check()
    progress.emit(kind="run_started", run_id=plan.run_id)
    rows: list[dict[str, Any]] = []
    started, t0 = time.time(), time.perf_counter()
    for _ in range(warmups):
        rows.append(send(s.spec, plan, client, prompts, len(rows), True, min(plan.tg, 8)))
    if plan.depth:  # the shared context in the cache, as llama-bench's -d fills it before it measures
        rows.append(send(s.spec, plan, client, prompts, len(rows), True, 1))
    for _ in range(syn.requests):
        s.gate.check()
        rows.append(send(s.spec, plan, client, prompts, len(rows), False, plan.tg))
    wall_s = time.perf_counter() - t0
    s.gate.check()  # the server may have been stopped under this run: a run cut short is not written
    row = run_row(_keys(s.spec, plan), rows, started, wall_s, s.digest)
    store.write_run(s.root, row, rows, s.manifest, kind=KIND)
    s.steps.log.info(f"{plan.run_id}: {row['n_ok']}/{row['n_requests']} ok, prefill "
                     f"{_fmt(row['prefill_tps_mean'])} tok/s, decode {_fmt(row['decode_tps_mean'])} tok/s, "
                     f"{row['n_stopped_early']} stopped early, input {'as asked' if row['input_exact'] else 'OFF'}")
    progress.emit(kind="run_finished", run_id=plan.run_id, valid=row["valid"], message=row["invalid_reason"] or "",
                  decode_tps=row["decode_tps_mean"], decode_label="decode mean",
                  ttft_ms={} if row["ttft_ms_mean"] is None else {"TTFT mean": row["ttft_ms_mean"]})
    return row


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def prepare_model(spec: MatrixSpec, inst: Instance, cell: Cell, client: WireClient) -> Prompts:
    """The cell's model loaded, and the way this server's prompts are made exact."""
    inst.prepare(cell)
    if backend_kind(spec.backend).loads_per_request:
        ollama_api.load(inst.url, cell.model, {"num_ctx": cell.num_ctx, "num_gpu": cell.num_gpu},
                        spec.load_timeout_s, api_key_env=inst.api_key_env)
    else:
        tokens = TokenPrompts.of_server(inst.url, inst.api_key_env)
        if tokens is not None:
            return tokens
    return TextPrompts.calibrate(client, cell.model, _options(spec, cell))


class Synthetic:
    """Exact-length requests per prompt_tokens x output_tokens x depth (spec `synthetic:`)."""

    name: ClassVar[str] = "synthetic"
    tables: ClassVar[tuple[str, ...]] = ("syn_requests", "syn_runs")

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.synthetic is not None and not rerun

    def plan(self, session: TRSession) -> Planned:
        inst = session.live[0]
        done = store.finished_run_ids(session.root, KIND)
        plans = plan_runs(session.spec, inst)
        todo = [p for p in plans if p.run_id not in done]
        return Planned(units=todo, runs=len(todo), skipped=len(plans) - len(todo), extra={"instance": inst})

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        plans: list[SynPlan] = planned.units
        inst: Instance = planned.extra["instance"]
        s = session
        for model in dict.fromkeys(p.cell.model for p in plans):
            mine = [p for p in plans if p.cell.model == model]
            client = make_client(s.spec.backend, inst.url, s.spec.timeout_s, s.spec.stall_timeout_s,
                                 api_key_env=inst.api_key_env)
            try:
                prompts = s.steps.call("synthetic-prepare", f"synthetic prepare {model}", prepare_model, s.spec, inst,
                                       mine[0].cell, client)
                for i, plan in enumerate(mine):
                    warmups = _section(s.spec).warmup_requests if i == 0 else 0
                    row = s.steps.call("synthetic-run", f"synthetic {plan.run_id}", measure_run, s, plan, client,
                                       prompts, warmups)
                    measured.other.setdefault(self.name, []).append(row)
            except RunCancelled:
                raise
            except Exception as err:  # noqa: BLE001 - one model's failure leaves the others measured
                s.steps.log.error(f"synthetic runs of {model} stopped: {err}")
            finally:
                client.close()

    def report_section(self, root: Path) -> ReportPart | None:
        return report_part(root)


# --- the report's llama-bench view ------------------------------------------------------------------


class BenchPoint(BaseModel):
    """One row of the llama-bench view: a pp row (prefill tok/s) or a tg row (decode tok/s) of one
    model and depth, as numbers."""

    model: str
    num_gpu: int
    num_ctx: int
    depth: int
    rate: str  # prefill (a pp row) or decode (a tg row)
    asked: int  # the prompt (pp) or output (tg) tokens asked
    run_means: list[float]  # per run: the mean rate over its requests in the row
    median: float | None  # over the row's requests, pooled
    ci: tuple[float, float] | None  # two-stage bootstrap interval of that median, runs then requests
    n_requests: int  # pp: the ok measured requests; tg: those that produced every asked token
    achieved_min: int | None  # the server's counts: the prompt less the depth (pp), the output (tg)
    achieved_max: int | None
    n_input_off: int = 0  # pp: requests whose prompt the server counted other than asked
    n_stopped_early: int = 0  # tg: ok requests with fewer output tokens than asked, left out of the rate

    @property
    def test(self) -> str:
        """llama-bench's name of the row: pp512, tg128 @ d4096."""
        return f"{'pp' if self.rate == 'prefill' else 'tg'}{self.asked}" + (f" @ d{self.depth}" if self.depth else "")

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.run_means)) if self.run_means else None

    @property
    def stddev(self) -> float | None:
        """Sample standard deviation over the runs' means (None with one run)."""
        return float(np.std(self.run_means, ddof=1)) if len(self.run_means) > 1 else None


def _point(keys: tuple, rate: str, asked: int, part: pd.DataFrame, column: str, achieved: pd.Series,
           **counts: int) -> BenchPoint:
    model, num_gpu, num_ctx, depth = keys
    runs = [g[column].dropna().tolist() for _, g in part.groupby("run_index")]
    pooled = [v for r in runs for v in r]
    lo, hi = achieved.min(), achieved.max()
    return BenchPoint(model=str(model), num_gpu=int(num_gpu), num_ctx=int(num_ctx), depth=int(depth), rate=rate,
                      asked=int(asked), run_means=[float(np.mean(r)) for r in runs if r],
                      median=float(np.median(pooled)) if pooled else None, ci=metrics.bootstrap_median_ci(runs),
                      n_requests=len(part), achieved_min=None if pd.isna(lo) else int(lo),
                      achieved_max=None if pd.isna(hi) else int(hi), **counts)


def bench_points(requests: pd.DataFrame) -> list[BenchPoint]:
    """llama-bench's rows per model and depth: a pp row (prefill tok/s, over every point with that prompt
    length) and a tg row (decode tok/s, over the full-length outputs of every point with that output
    length)."""
    out: list[BenchPoint] = []
    ok = requests[~requests["is_warmup"].astype(bool) & (requests["status"] == "ok")]
    for keys, at in ok.groupby(["model", "num_gpu", "num_ctx", "depth"], sort=True):
        depth = int(keys[3])
        for pp, part in at.groupby("prompt_tokens_asked", sort=True):
            off = int((part["input_exact"] == False).sum())  # noqa: E712 - a nullable column
            out.append(_point(keys, "prefill", int(pp), part, "prefill_tps", part["prompt_tokens"] - depth,
                              n_input_off=off))
        for tg, part in at.groupby("output_tokens_asked", sort=True):
            full = part[~part["stopped_early"].astype(bool)]
            out.append(_point(keys, "decode", int(tg), full, "decode_tps", part["output_tokens"],
                              n_stopped_early=len(part) - len(full)))
    return out


def _lengths(p: BenchPoint) -> str:
    if p.achieved_min is None:
        return "n/a"
    return f"{p.achieved_min}" if p.achieved_min == p.achieved_max else f"{p.achieved_min}-{p.achieved_max}"


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def bench_row(p: BenchPoint) -> list[str]:
    """A point as the section's table row: mean +- stddev of the per-run means (the stddev n/a with one
    run), the pooled median with its interval."""
    pm = "n/a" if p.mean is None else f"{p.mean:.1f} ± {_f(p.stddev)}"
    median = _f(p.median) + ("" if p.ci is None else f" [{p.ci[0]:.1f}, {p.ci[1]:.1f}]")
    achieved = f"{p.asked} / {_lengths(p)}" + (f" ({p.n_input_off} off)" if p.n_input_off else "")
    early = str(p.n_stopped_early) if p.rate == "decode" else "-"
    return [p.model, p.test, p.rate, pm, median, str(len(p.run_means)), str(p.n_requests), achieved, early]


_CI = "statistics.95% CI of a single-agent median"


def point_figures(p: BenchPoint) -> list[Figure]:
    """A point's numbers as the summary's records hold them: the rate's mean and stddev over runs, its
    median with the interval, the achieved lengths and the requests counted apart."""
    values: dict[str, str | int | float | bool | None] = {
        "test": p.test, "pp" if p.rate == "prefill" else "tg": p.asked, "depth": p.depth, "num_gpu": p.num_gpu,
        "num_ctx": p.num_ctx}
    metric = "prefill_tps" if p.rate == "prefill" else "decode_tps"
    tokens = "prompt_tokens" if p.rate == "prefill" else "output_tokens"

    def fig(metric: str, statistic: str, value: float | None, n: int | None, n_of: str | None, unit: str,
            definition: str, ci: tuple[float, float] | None = None) -> Figure:
        return Figure(model=p.model, config=p.test, config_values=values, metric=metric, statistic=statistic,
                      value=value, n=n, n_of=n_of, unit=unit, definition=definition, ci=ci,
                      ci_definition=_CI if ci else None)

    runs = len(p.run_means)
    out = [fig(metric, "mean", p.mean, runs, "runs", "tok/s", f"request.{metric}"),
           fig(metric, "stddev", p.stddev, runs, "runs", "tok/s", f"request.{metric}"),
           fig(metric, "median", p.median, p.n_requests, "requests", "tok/s", f"request.{metric}", p.ci),
           fig(tokens, "min", p.achieved_min, None, None, "tokens", f"request.{tokens}"),
           fig(tokens, "max", p.achieved_max, None, None, "tokens", f"request.{tokens}")]
    if p.rate == "prefill":
        out.append(fig("n_input_off", "value", p.n_input_off, None, None, "requests", "request.input_exact"))
    else:
        out.append(fig("n_stopped_early", "value", p.n_stopped_early, None, None, "requests", "request.stopped_early"))
    return out


HEADER = ("| model | test | rate | tok/s mean ± stddev over runs | median [95% CI] | runs | requests | "
          "asked / achieved tokens | stopped early |")


def report_part(root: Path) -> ReportPart | None:
    """The section from the stored syn_requests alone; None when nothing was measured."""
    requests = store.read_frame(root, "syn_requests")
    if requests.empty:
        return None
    points = bench_points(requests)
    rows = [bench_row(p) for p in points]
    runs = store.read_frame(root, "syn_runs")
    marked = runs[~runs["input_exact"].astype(bool)]
    lines = [HEADER, "|---|---|---|---:|---:|---:|---:|---:|---:|", *("| " + " | ".join(r) + " |" for r in rows)]
    notes = [
        "Requests of an exact length, one at a time, in llama-bench's terms: `ppN` is a prompt of N tokens "
        "(prefill tok/s: metrics' prefill_tps, the prompt tokens the server processed over its own prefill "
        "time), `tgN` an output of N tokens (decode tok/s: decode_tps, over the requests that produced all N), "
        "`@ dD` with D tokens of shared context already in the server's cache. Mean ± stddev are over the runs' "
        "means; the median is over the requests of every run, with its two-stage bootstrap interval (runs, then "
        "requests; none with one run). Achieved "
        "lengths are the server's own counts (the prompt less the depth).",
    ]
    if not marked.empty:
        notes.append(f"{count(len(marked), 'run')} got a prompt length other than asked: "
                     + ", ".join(sorted(marked["run_id"].astype(str))) + ".")
    early = int(requests["stopped_early"].fillna(False).astype(bool).sum())
    if early:
        notes.append(f"{count(early, 'request')} stopped before their asked output length (the server cannot be made to "
                     "ignore end-of-sequence): counted in 'stopped early' and left out of the decode rates.")
    if not rows:
        notes.append("No measured request answered ok.")
    return ReportPart(title="Synthetic lengths (llama-bench view)", markdown="\n\n".join(notes) + "\n\n" + "\n".join(lines),
                      figures=[f for p in points for f in point_figures(p)])
