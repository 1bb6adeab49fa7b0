"""Progress events from the flow to whoever shows them (the CLI's progress bar, Prefect artifacts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel


class ProgressEvent(BaseModel):
    kind: Literal["planned", "run_started", "request_done", "run_finished", "run_skipped", "stage"]
    total_runs: int = 0
    run_id: str = ""
    message: str = ""
    request: int = 0
    requests: int = 0
    valid: bool | None = None


_listeners: list[Callable[[ProgressEvent], None]] = []


def subscribe(listener: Callable[[ProgressEvent], None]) -> Callable[[], None]:
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def emit(**fields) -> None:
    event = ProgressEvent(**fields)
    for listener in list(_listeners):
        listener(event)
