"""The workloads' steps as Prefect task runs: each step a task run of its kind with its own name
(visible in the UI, with its state and log), lanes mapped on the flow's task runner."""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

from prefect import Task, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact, create_progress_artifact, create_table_artifact, update_progress_artifact)
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import CancelledRun, MissingContextError
from prefect.utilities.annotations import unmapped

from trbench.run import stopping
from trbench.run.single import RunCancelled

T = TypeVar("T")


def artifact_key(key: str) -> str:
    # artifact keys allow lowercase letters, digits and dashes only
    return re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")


def _literal(name: str) -> str:
    """A task run name that Prefect formats with the parameters: braces in it kept as they are."""
    return name.replace("{", "{{").replace("}", "}}")


def _call(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    return fn(*args)


def _unit(item: Any, fn: Callable[..., T], shared: tuple[Any, ...]) -> T:
    return fn(item, *shared)


class PrefectSteps:
    """trbench.workloads.steps.Steps on Prefect: one task run per step."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, str], Task] = {}

    def _task(self, kind: str, fn: Callable[..., Any], run_name: str) -> Task:
        key = (kind, run_name)
        if key not in self._tasks:
            self._tasks[key] = task(name=kind, task_run_name=run_name, cache_policy=NO_CACHE)(fn)
        return self._tasks[key]

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter:
        try:
            return get_run_logger()
        except MissingContextError:  # outside a flow or task run
            return logging.getLogger("trbench.tr")

    def markdown_artifact(self, key: str, markdown: str, description: str) -> None:
        create_markdown_artifact(key=artifact_key(key), markdown=markdown, description=description)

    def table_artifact(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        create_table_artifact(key=artifact_key(key), table=rows, description=description)

    def progress_artifact(self, key: str, description: str) -> Callable[[float, str | None], None]:
        # called from a flow or task (sync): the id itself, never the coroutine Prefect's dispatch types allow
        artifact_id = cast(UUID, create_progress_artifact(progress=0.0, key=artifact_key(key), description=description))

        def update(pct: float, about: str | None = None) -> None:
            if about:
                update_progress_artifact(artifact_id=artifact_id, progress=pct, description=about)
            else:
                update_progress_artifact(artifact_id=artifact_id, progress=pct)

        return update

    def command(self, tr_id: str) -> str:
        """A deployment run (UI, schedule, worker, fan-out) as the `prefect deployment run` with its
        parameters, where the process's own argv would only name Prefect's engine; anything else as
        its argv."""
        from prefect.runtime import deployment, flow_run

        if not deployment.name:
            return " ".join(sys.argv)
        params = dict(flow_run.parameters)
        if "tr_id" in params:  # the expanded one ({date}): the command resumes this TR run, not today's
            params["tr_id"] = tr_id
        return (f"prefect deployment run {shlex.quote(f'{flow_run.flow_name}/{deployment.name}')} "
                f"--params {shlex.quote(json.dumps(params, sort_keys=True, default=str))}")

    def call(self, kind: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        return task(name=kind, task_run_name=_literal(name), cache_policy=NO_CACHE)(_call)(fn, args)

    def map(self, kind: str, name: str, fn: Callable[..., T], items: Sequence[Any], *shared: Any) -> list[T | Exception]:
        if not items:
            return []
        futures = self._task(kind, _unit, name).map(list(items), unmapped(fn), unmapped(shared))
        out: list[T | Exception] = []
        for future in stopping.wait_each(futures):  # an interrupt at once, the lanes still running
            try:
                out.append(future.result())
            except (RunCancelled, CancelledRun):
                raise
            except Exception as err:  # noqa: BLE001 - one lane's failure leaves the others' outcomes counted
                out.append(err)
        return out
