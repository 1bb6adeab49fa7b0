"""Progress events from the flow to whoever shows them (the CLI's progress bar or plain lines,
Prefect artifacts)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Literal, TextIO

from pydantic import BaseModel

from trbench.data.rows import CACHE_STATE_LABELS, TARGET_STATES
from trbench.prose import count


class ProgressEvent(BaseModel):
    kind: Literal["planned", "run_started", "request_done", "run_finished", "run_skipped", "stage", "pull"]
    total_runs: int = 0
    run_id: str = ""
    message: str = ""
    request: int = 0
    requests: int = 0
    valid: bool | None = None
    # run_finished: the run's decode tok/s and TTFT, each under the label it is shown with
    decode_tps: float | None = None
    decode_label: str = "decode p50"
    ttft_ms: dict[str, float] = {}  # label -> ms: "TTFT p50", or per cache state "TTFT cold p50"...
    # pull: a model being pulled into an instance (message: "<instance>: <model>: <status>")
    model: str = ""
    completed: int = 0  # bytes of the layer downloading
    total: int = 0

    @property
    def pull_pct(self) -> float | None:
        return round(self.completed / self.total * 100.0, 1) if self.total else None


_listeners: list[Callable[[ProgressEvent], None]] = []


def subscribe(listener: Callable[[ProgressEvent], None]) -> Callable[[], None]:
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def emit(**fields) -> None:
    event = ProgressEvent(**fields)
    for listener in list(_listeners):
        listener(event)


# The run row's median TTFT columns and their labels: per cache state where the run row has them.
TTFT_COLUMNS = (*((f"ttft_{st}_ms_p50", f"TTFT {CACHE_STATE_LABELS[st]} p50")
                  for st in TARGET_STATES),
                ("ttft_ms_p50", "TTFT p50"))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _reason(row: dict) -> str:
    return "" if row.get("valid") else " ".join(str(row.get("invalid_reason") or "").split())[:200]


def run_figures(row: dict) -> dict:
    """The fields of a single-agent run's run_finished event, from its run row."""
    ttft = {label: v for col, label in TTFT_COLUMNS if (v := _number(row.get(col))) is not None}
    return {"run_id": row["run_id"], "valid": bool(row["valid"]), "message": _reason(row),
            "decode_tps": _number(row.get("decode_tps_p50")), "ttft_ms": ttft}


def multi_run_figures(row: dict) -> dict:
    """The same for a multi-agent run, which has no run-wide median: the mean of its agents'
    concurrent figures stands in, labelled so."""
    decode = [v for role in ("collector", "insight") if (v := _number(row.get(f"{role}_concurrent_decode_tps"))) is not None]
    ttft = [v for role in ("collector", "insight") if (v := _number(row.get(f"{role}_concurrent_ttft_ms"))) is not None]
    return {"run_id": row["run_id"], "valid": bool(row["valid"]), "message": _reason(row),
            "decode_tps": sum(decode) / len(decode) if decode else None, "decode_label": "decode agents' mean",
            "ttft_ms": {"TTFT agents' mean": sum(ttft) / len(ttft)} if ttft else {}}


def load_step_figures(row: dict) -> dict:
    """The same for a load step: its output tok/s, TTFT p95 and queueing p50, as its step row has them."""
    ttft = {label: v for col, label in (("ttft_ms_p95", "TTFT p95"), ("queue_ms_p50", "queue p50"))
            if (v := _number(row.get(col))) is not None}
    return {"run_id": row["run_id"], "valid": bool(row["valid"]), "message": _reason(row),
            "decode_tps": _number(row.get("output_tps")), "decode_label": "output", "ttft_ms": ttft}


def describe_pull(e: ProgressEvent) -> str:
    pct = e.pull_pct
    return f"pull {e.message}" + (f" {pct:.0f}% of {e.total / 1e9:.2f} GB" if pct is not None else "")


class PullThrottle:
    """Ollama sends a pull progress line for every few hundred KB; a listener that writes a line
    or calls an API should act on a new status, or every `step_pct` percent, only."""

    def __init__(self, step_pct: float = 10.0):
        self.step_pct = step_pct
        self._last: dict[str, tuple[str, float]] = {}

    def due(self, e: ProgressEvent) -> bool:
        who, _, status = e.message.rpartition(": ")  # "<instance>: <model>", "<status>"
        pct = e.pull_pct or 0.0
        prev = self._last.get(who)
        if prev is None or prev[0] != status or pct >= prev[1] + self.step_pct or (pct == 100.0 != prev[1]):
            self._last[who] = (status, pct)
            return True
        return False


def describe_run(e: ProgressEvent) -> str:
    """One plain line for a finished run: id, valid or invalid, decode tok/s, TTFT."""
    verdict = "valid" if e.valid else "invalid"
    decode = f"{e.decode_tps:.1f}" if e.decode_tps is not None else "-"
    ttft = ", ".join(f"{label} {ms:.1f} ms" for label, ms in e.ttft_ms.items()) or "TTFT -"
    return f"run {e.run_id}: {verdict}, {e.decode_label} {decode} tok/s, {ttft}" + (f" ({e.message})" if e.message else "")


class PlainLines:
    """Progress as plain lines, one per finished run as it finishes, for a log or a pipe where a
    progress bar shows nothing until the end."""

    def __init__(self, out: TextIO):
        self.out = out
        self.lock = threading.Lock()  # runs of parallel lanes finish on their own threads
        self.valid = self.invalid = self.skipped = 0
        self.planned = 0
        self.pulls = PullThrottle()

    def __call__(self, e: ProgressEvent) -> None:
        if e.kind == "pull":
            if self.pulls.due(e):
                self._write(describe_pull(e))
        elif e.kind == "planned":  # adds up: a TR with a load section plans its steps after the matrix
            self.planned += e.total_runs
            self._write(f"planned: {count(e.total_runs, 'run')}" + (f", {e.message}" if e.message else ""))
        elif e.kind == "run_skipped":
            self.skipped += 1
        elif e.kind == "run_finished":
            with self.lock:
                self.valid += bool(e.valid)
                self.invalid += not e.valid
                done = self.valid + self.invalid + self.skipped
            self._write(f"[{done}/{self.planned or '?'}] {describe_run(e)}")

    def summary(self, outcome: str) -> str:
        finished = self.valid + self.invalid
        return (f"summary: {count(finished, 'run')} finished, {self.valid} valid, {self.invalid} invalid"
                + (f", {self.skipped} already finished before" if self.skipped else "") + f"; {outcome}")

    def write_summary(self, outcome: str) -> None:
        self._write(self.summary(outcome))

    def _write(self, line: str) -> None:
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()  # a pipe is block-buffered: the line must leave now, not at exit
