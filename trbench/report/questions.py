"""The objective a report states when its spec gives none, and the questions it answers: each
from the workloads the TR measured (trbench.report.outline.WORKLOADS), so a report asks only
what its data can answer."""

from __future__ import annotations

OBJECTIVES = {
    "single": "each model's single-agent throughput, time to first token, latency and run-to-run consistency",
    "multi": "its dual-instance multi-agent efficiency and contention",
    "suites": "the quality of its answers on the quality suites",
    "load": "its throughput, latency, queueing and goodput as the requests in flight grow, and the saturation point",
    "embeddings": "the serving speed and latency of its embeddings endpoint",
}
QUESTIONS_BY_WORKLOAD = {
    "single": ["Does model choice materially shift single-agent throughput (decode tok/s), TTFT and latency at the "
               "same config?"],
    "multi": ["Does model choice change multi-agent efficiency, or does the architecture (two instances, two agents) "
              "dominate?"],
    "load": ["How do throughput, latency and goodput change as more requests are in flight, and where does the "
             "server saturate?"],
    "embeddings": ["How fast does the embeddings endpoint serve texts, and within its latency SLO?"],
}
VRAM_QUESTION = ("Which configurations fit the GPU memory budget, and what did a model cost in VRAM and, where "
                 "measured, energy?")


def default_objective(workloads: list[str]) -> str:
    """The objective of a TR whose spec states none, from what it measured."""
    parts = [OBJECTIVES[w] for w in workloads if w in OBJECTIVES]
    if not parts:
        return "No workload was measured."
    return ("Measure " + "; ".join(parts) + ", with the architecture and configs held constant"
            + ("; compare the models against the baseline model." if {"single", "multi"} & set(workloads) else "."))


def questions(workloads: list[str]) -> list[str]:
    """The questions a report of these workloads answers, in report order."""
    out = [q for w in workloads for q in QUESTIONS_BY_WORKLOAD.get(w, [])]
    if {"single", "multi"} & set(workloads):  # VRAM and energy are read beside the runs
        out.append(VRAM_QUESTION)
    return out
