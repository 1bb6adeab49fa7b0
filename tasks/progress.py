"""Live progress of a TR run as a Prefect progress artifact, updated as runs finish."""

from __future__ import annotations

import threading
from collections.abc import Callable

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.report import artifact_key
from trbench.run import progress


def track_progress(tr_id: str, total_runs: int = 0, already_done: int = 0) -> Callable[[], None]:
    """Create the artifact and keep it current; returns the function that stops tracking. Work
    planned later (load steps after the matrix, a sweep's rates) adds to the total, as in the CLI."""
    lock = threading.Lock()
    state = {"done": already_done, "total": total_runs}

    def percent() -> float:
        return 0.0 if state["total"] == 0 else min(100.0, round(state["done"] / state["total"] * 100.0, 1))

    artifact_id = create_progress_artifact(progress=percent(), key=artifact_key(tr_id, "progress"),
                                           description=f"{tr_id}: runs and steps finished of those planned")

    def on_event(event: progress.ProgressEvent) -> None:
        if event.kind not in ("run_finished", "run_skipped", "planned"):
            return
        with lock:
            if event.kind == "planned":
                state["total"] += event.total_runs or 0
            else:
                state["done"] += 1
            update_progress_artifact(artifact_id=artifact_id, progress=percent())

    return progress.subscribe(on_event)


def track_pulls() -> Callable[[], None]:
    """A Prefect progress artifact per model an instance pulls (preflight, pull_models: true),
    kept current as the layers download; returns the function that stops tracking."""
    lock = threading.Lock()
    artifacts: dict[str, object] = {}
    percent: dict[str, float] = {}  # of the layer downloading; the statuses after it carry no byte counts
    throttle = progress.PullThrottle(step_pct=5.0)  # an API call per progress line would be thousands

    def on_event(event: progress.ProgressEvent) -> None:
        if event.kind != "pull":
            return
        who, _, status = event.message.rpartition(": ")
        with lock:
            if who not in artifacts:
                artifacts[who] = create_progress_artifact(progress=0.0, key=artifact_key("pull", who),
                                                          description=f"pull {who}")
            pct = 100.0 if status == "success" else event.pull_pct
            percent[who] = pct if pct is not None else percent.get(who, 0.0)
            if throttle.due(event):
                update_progress_artifact(artifact_id=artifacts[who], progress=percent[who],
                                         description=progress.describe_pull(event))

    return progress.subscribe(on_event)
