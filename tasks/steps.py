"""The workloads' steps as Prefect task runs: each step a task run of its kind with its own name
(visible in the UI, with its state and log), lanes mapped on the flow's task runner."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import CancelledRun, MissingContextError
from prefect.utilities.annotations import unmapped

from trbench.run import stopping
from trbench.run.single import RunCancelled

T = TypeVar("T")


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
            self._tasks[key] = task(fn, name=kind, task_run_name=run_name, cache_policy=NO_CACHE)
        return self._tasks[key]

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter:
        try:
            return get_run_logger()
        except MissingContextError:  # outside a flow or task run
            return logging.getLogger("trbench.tr")

    def call(self, kind: str, name: str, fn: Callable[..., T], *args: Any) -> T:
        return task(_call, name=kind, task_run_name=_literal(name), cache_policy=NO_CACHE)(fn, args)

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
