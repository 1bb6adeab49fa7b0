"""How a workload's steps run: plainly in this process (DirectSteps), or each as a Prefect task run
(tasks/steps.py). A workload names its steps and hands them over; it never imports Prefect, so the
fallback ladder, resume and down-server handling run and are tested without it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from trbench.run import stopping
from trbench.run.single import RunCancelled

T = TypeVar("T")
U = TypeVar("U")


class Steps(Protocol):
    """The runner of a TR's steps. `kind` is the step's kind (the same for every run of it, e.g.
    "bench-run"), `name` this one's name (e.g. "run smollm2_135m_..._r00_a1")."""

    def call(self, kind: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) as one step; its exception propagates."""
        ...

    def map(self, kind: str, name: str, fn: Callable[..., T], items: Sequence[U], *shared: Any) -> list[T | Exception]:
        """fn(item, *shared) for every item at once (threads); each result or the exception it raised,
        in order, so one failure leaves the others counted. A requested stop raises KeyboardInterrupt
        at once, while the steps still run (the session's gate then stops them)."""
        ...

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter:
        """Where a step says what happened (the flow run's log under Prefect)."""
        ...

    def markdown_artifact(self, key: str, markdown: str, description: str) -> None:
        """Show a Markdown document beside the run (the report, under Prefect); nothing plainly."""
        ...

    def table_artifact(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        """Show a table beside the run (validation results, regressions, under Prefect); nothing plainly."""
        ...

    def progress_artifact(self, key: str, description: str) -> Callable[[float, str | None], None]:
        """A progress bar beside the run (under Prefect); the function that moves it to a percentage."""
        ...

    def command(self, tr_id: str) -> str:
        """How this TR run was started, to start it again (the manifest keeps it)."""
        ...


class DirectSteps:
    """Every step a plain call in this process."""

    POLL_S = 0.2

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("trbench.tr")

    @property
    def log(self) -> logging.Logger:
        return self._log

    def markdown_artifact(self, key: str, markdown: str, description: str) -> None:
        return None

    def table_artifact(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        return None

    def progress_artifact(self, key: str, description: str) -> Callable[[float, str | None], None]:
        def nothing(_pct: float, _about: str | None = None) -> None:
            return None

        return nothing

    def command(self, tr_id: str) -> str:
        return " ".join(sys.argv)

    def call(self, kind: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def map(self, kind: str, name: str, fn: Callable[..., T], items: Sequence[U], *shared: Any) -> list[T | Exception]:
        if not items:
            return []
        pool = ThreadPoolExecutor(max_workers=len(items), thread_name_prefix=f"trbench-{kind}")
        try:
            futures: list[Future] = [pool.submit(fn, item, *shared) for item in items]
            pending = set(futures)
            while pending:
                stopping.raise_if_requested()
                _, pending = wait(pending, timeout=self.POLL_S, return_when=FIRST_COMPLETED)
            out: list[T | Exception] = []
            for f in futures:
                err = f.exception()
                if err is not None and (not isinstance(err, Exception) or isinstance(err, RunCancelled)):
                    raise err  # an interrupt inside a step, or a step the closed gate stopped
                out.append(err if err is not None else f.result())
            return out
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
