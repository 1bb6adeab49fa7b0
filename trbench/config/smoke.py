"""Smoke mode (`trbench run SPEC --smoke`): the spec cut to a setup check that touches every part
once, before a long run, in about a minute on the embedded engine: every model loads and answers
(one cell each, 1 run of 2 requests), every quality suite (router, orchestrator, chat, QA with one
document per prompt) runs 1 run of 2 requests on the first model, all with short answers. The
multi-agent experiment is left out: one run of it costs more than the rest together (both agents'
whole workflows, at once and then alone) and checks no part the single-agent runs do not. Its
data goes under its own tr_id (`<tr_id>-smoke`), so a smoke run never mixes into the real TR."""

from __future__ import annotations

from trbench.config.spec import MatrixSpec, parse_spec
from trbench.config.suites_section import QA_MIN_CTX, SCENARIO_NAMES

RUNS, REQUESTS, MAX_TOKENS, SUITE_MAX_TOKENS = 1, 2, 16, 32
SUFFIX = "-smoke"


def smoke_spec(spec: MatrixSpec) -> MatrixSpec:
    data = spec.model_dump()
    grid = data["grid"]
    data.update(
        tr_id=(spec.tr_id[: 64 - len(SUFFIX)] + SUFFIX) if not spec.tr_id.endswith(SUFFIX) else spec.tr_id,
        runs=RUNS, requests_per_run=REQUESTS, warmup_requests=0, min_ok_requests=None, ttft="cold",
        max_tokens=min(spec.max_tokens, MAX_TOKENS), baseline_tr_id=None, oom_fallback=[],
        grid={k: v[:1] if v is not None else None for k, v in grid.items()},
    )
    data.update(multi_agent=None, single_agent=True, load=None)  # load mode: a run of its own, not a setup check
    # the report of a setup check must never read as the real TR's: its own title, objective and stamp
    data.update(smoke=True, title=f"Setup check (--smoke) of {spec.title or spec.tr_id}", objective=(
        f"Check the setup before the full run of {spec.tr_id}: every model loads and answers, every quality suite "
        f"runs once ({RUNS} run of {REQUESTS} requests each, answers cut to {data['max_tokens']} tokens). Pass or "
        "fail only: these figures are not a measurement, and no model is compared."))
    suites = data.get("suites") or {}
    suites.update(scenarios=list(SCENARIO_NAMES), qa=True, runs=RUNS, messages=REQUESTS, questions=REQUESTS, top_k=1,
                  models=(suites.get("models") or spec.models)[:1],
                  max_tokens=min(suites.get("max_tokens") or SUITE_MAX_TOKENS, SUITE_MAX_TOKENS),
                  num_ctx=max(suites.get("num_ctx") or 0, max(spec.grid.num_ctx), QA_MIN_CTX))
    data["suites"] = suites
    out = parse_spec(data, f"spec {spec.tr_id} in smoke mode")
    out._flat = dict(spec._flat)
    return out
