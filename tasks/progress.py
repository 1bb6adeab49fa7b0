"""Live progress of a TR run as a Prefect progress artifact, updated as runs finish."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from tasks.report import artifact_key
from trbench.run import progress


def track_progress(tr_id: str, total_runs: int, already_done: int) -> Callable[[], None]:
    """Create the artifact and keep it current; returns the function that stops tracking."""
    lock = threading.Lock()
    state = {"done": already_done}

    def percent() -> float:
        return 100.0 if total_runs == 0 else round(state["done"] / total_runs * 100.0, 1)

    # called from sync code: the UUID itself, never the coroutine Prefect's dispatch types allow
    artifact_id = cast(UUID, create_progress_artifact(progress=percent(), key=artifact_key(tr_id, "progress"),
                                                      description=f"{tr_id}: runs finished of {total_runs} planned"))

    def on_event(event: progress.ProgressEvent) -> None:
        if event.kind != "run_finished":
            return
        with lock:
            state["done"] += 1
            update_progress_artifact(artifact_id=artifact_id, progress=percent())

    return progress.subscribe(on_event)


def track_pulls() -> Callable[[], None]:
    """A Prefect progress artifact per model an instance pulls (preflight, pull_models: true),
    kept current as the layers download; returns the function that stops tracking."""
    lock = threading.Lock()
    artifacts: dict[str, UUID] = {}
    percent: dict[str, float] = {}  # of the layer downloading; the statuses after it carry no byte counts
    throttle = progress.PullThrottle(step_pct=5.0)  # an API call per progress line would be thousands

    def on_event(event: progress.ProgressEvent) -> None:
        if event.kind != "pull":
            return
        who, _, status = event.message.rpartition(": ")
        with lock:
            if who not in artifacts:
                artifacts[who] = cast(UUID, create_progress_artifact(progress=0.0, key=artifact_key("pull", who),
                                                                     description=f"pull {who}"))
            pct = 100.0 if status == "success" else event.pull_pct
            percent[who] = pct if pct is not None else percent.get(who, 0.0)
            if throttle.due(event):
                update_progress_artifact(artifact_id=artifacts[who], progress=percent[who],
                                         description=progress.describe_pull(event))

    return progress.subscribe(on_event)
