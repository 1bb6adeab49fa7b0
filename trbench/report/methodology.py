"""The report's prose derived from its numbers: the methodology list and the commands that measure
and report the TR run again."""

from __future__ import annotations

from pathlib import Path

from trbench.config.spec import MatrixSpec
from trbench.data import remote
from trbench.measure import metrics
from trbench.measure.load_metrics import LOAD_DEFINITIONS
from trbench.report.models import ReportData
from trbench.report.regression import DEFAULT_THRESHOLD_PCT
from trbench.prose.english import count, join


def _cli(command: str | None) -> str:
    """The recorded command with the trbench executable as the README names it (.venv/bin/trbench)."""
    if not command:
        return ".venv/bin/trbench run <spec>   # the command was not recorded"
    argv = command.split()
    if argv and Path(argv[0]).name == "trbench":
        argv[0] = ".venv/bin/trbench"
    return " ".join(argv)


def reproduce(data: ReportData, tr_root: Path) -> list[str]:
    """The commands that measure and report this TR run again from a fresh clone: the README's setup
    (`make setup`: the venv, trbench and the bundled models), then the recorded command."""
    out = ["git clone <this repository> trbench && cd trbench"]
    if data.setup.commit:
        out.append(f"git checkout {data.setup.commit}")
    out.append("make setup   # README: venv, trbench and the bundled models (make run = setup + the quickstart)")
    out.append(_cli(data.setup.command))
    url = remote.url_of(tr_root.parent)  # object storage: its URL, not this process's working copy
    flag = "" if url is None and tr_root.parent.name == "outputs" else f" --output-dir {url or tr_root.parent}"
    out.append(f".venv/bin/trbench report {data.tr_id}{flag}")
    out.append(f".venv/bin/trbench report {data.tr_id}{flag} --baseline OTHER_TR_ID --threshold "
               f"{DEFAULT_THRESHOLD_PCT:g}   # exit code 3 on regressions, 4 when no cell was compared")
    return out


def methodology(data: ReportData, spec: MatrixSpec | None) -> list[tuple[str, str]]:
    """How each workload the TR measured was measured and summarised; nothing on the ones it did not."""
    present = set(data.workloads)
    items: list[tuple[str, str]] = []
    if data.smoke:
        items.append(("setup check", "the spec cut by --smoke: every model and quality suite once, 1 run of 2 requests "
                                     "each; pass or fail only, no winner named"))
    if "single" in present:
        configs = list(dict.fromkeys(c.config.label for c in data.cells))
        models = list(dict.fromkeys(c.model for c in data.cells))
        matrix = (f"{count(len(models), 'model')} x {count(len(configs), 'config')} (GPU layers, context size, "
                  f"temperature): {join(configs)}; up to {count(data.runs_per_cell or 0, 'run')} per model x config")
        if data.warmup_per_run:
            matrix += f"; up to {count(data.warmup_per_run, 'warm-up request')} per run, stored but never counted"
        if spec is not None and spec.duration_s is not None:  # how many it sent is each run's own count
            matrix += (f"; each run bounded by time: measured prompts sent for {spec.duration_s:g} s after its "
                       "warm-ups, as many as fitted")
        items.append(("matrix", matrix))
    if present & {"single", "multi"}:
        items.append(("baseline model", f"{data.baseline_model or 'none'} ({data.baseline_source}); normalized tables "
                                        "are value / baseline value at the same config or scenario x 100"))
    if "single" in present:
        items += [
            ("pooling", "statistics per model x config are " + metrics.RUN_DEFINITIONS["per-config statistics"]
             + "; valid run: " + metrics.RUN_DEFINITIONS["valid run"]),
            # each definition and rule is stated once, where its table or section is (intervals: Statistics,
            # the winner rule: Cross-model comparison, outliers: their section, multi-agent: its definitions)
            ("medians and intervals", "every median is shown with a bootstrap 95% interval; figures measured once "
                                      "per run (multi-agent speedup and efficiency, tokens per joule) are the median "
                                      "of their runs with one (Statistics, below)"),
        ]
    if "load" in present:
        items.append(("load", "steps of concurrent streams (closed loop) or of a request rate (open loop), each with "
                              "its own warm-up; goodput: " + LOAD_DEFINITIONS["goodput_rps"] + "; saturation point: "
                              + LOAD_DEFINITIONS["saturation point"]))
    if "embeddings" in present:
        items.append(("embeddings", "the embeddings endpoint in steps of batch size, each with its own warm-up; "
                                    "latency from request sent to the whole answer, client clock"))
    if not items:  # nothing finished: the section still says so, rather than stand empty
        items.append(("measured", "nothing: no run, load step or quality suite answer finished, so no figure was "
                                  "computed"))
    return items

