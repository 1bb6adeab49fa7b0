"""The validation in a process of its own, started as a TR run opens.

Great Expectations takes seconds to import. In a child process that imports it as soon as it
starts, those seconds pass while the parent measures and renders the report, instead of after
them. The child runs at the lowest CPU priority (nice 19): where the servers under test use the
CPU, it takes only cycles they leave idle (about 1.5 % of a core when both want it), so it cannot
slow what is measured; once the measuring ends, it is given this process's priority back where the
system allows it (root), and has the CPU. The child then waits for one job on its stdin (a JSON line: the TR folder,
the expected runs, the report) and answers one JSON line on its stdout: the ValidationResult, or
the error that stopped it. It ends when its job is done, when its stdin closes (the parent ended),
on Ctrl-C (quietly: the parent says what stopped) and when its parent dies.

A child that cannot answer is not a failed validation: the parent validates in its own process
instead, so the result never depends on where it was computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from trbench.validation.validate import ValidationResult, validate_tr

log = logging.getLogger("trbench.validation")


class ValidationJob(BaseModel):
    tr_root: str
    expected_runs: dict[str, int] | None = None
    report: str | None = None


class ValidationAnswer(BaseModel):
    result: ValidationResult | None = None
    error: str | None = None


class ValidationProcess:
    """A child process with Great Expectations imported, for one validate_tr."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-m", "trbench.validation.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, 19)

    def unthrottle(self) -> None:
        """Back to this process's priority once nothing is measured any more, so that a busy machine (a
        Prefect server beside it, other jobs) cannot starve the validation the TR waits for. Only a
        privileged process (root, or RLIMIT_NICE) may lower a nice value: elsewhere it stays at 19."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self._proc.pid, os.getpriority(os.PRIO_PROCESS, 0))

    def validate(self, tr_root: Path, expected_runs: dict[str, int] | None,
                 report: Path | None) -> ValidationResult:
        job = ValidationJob(tr_root=str(tr_root), expected_runs=expected_runs,
                            report=None if report is None else str(report))
        answer = self._ask(job)
        if answer is not None and answer.result is not None:
            return answer.result
        log.warning("the validation process gave no result (%s): validating here",
                    answer.error if answer is not None else "it ended")
        return validate_tr(tr_root, expected_runs, report)

    def _ask(self, job: ValidationJob) -> ValidationAnswer | None:
        proc, self._proc = self._proc, None
        if proc is None or proc.stdin is None or proc.stdout is None:
            return None
        try:
            proc.stdin.write(job.model_dump_json() + "\n")
            proc.stdin.close()
            line = proc.stdout.readline()
            return ValidationAnswer.model_validate_json(line) if line else None
        except (OSError, ValueError):
            return None
        finally:
            _end(proc)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc)

    @classmethod
    def start_early(cls) -> None:
        """Start the process before the caller's own imports (the CLI, once the spec is known to
        need validation); the TR run that follows in this process claims it."""
        global _early
        if _early is None:
            _early = cls()

    @classmethod
    def claim(cls) -> ValidationProcess:
        """The process started early in this process, else a new one."""
        global _early
        proc, _early = _early, None
        return proc if proc is not None else cls()

    def __enter__(self) -> ValidationProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_early: ValidationProcess | None = None


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(OSError):
        proc.wait(timeout=5)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()


def _die_with_parent() -> None:
    """Linux: end this process when its parent ends (prctl PR_SET_PDEATHSIG), even while importing."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def main() -> None:
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a terminal's Ctrl-C: no traceback here
    _die_with_parent()
    from trbench.validation.gx import make_context  # noqa: PLC0415 (the seconds this process exists for)

    context = make_context()
    line = sys.stdin.readline()
    if not line:
        return
    job = ValidationJob.model_validate_json(line)
    try:
        result = validate_tr(Path(job.tr_root), job.expected_runs, None if job.report is None else Path(job.report),
                             context=context)
        answer = ValidationAnswer(result=result)
    except Exception as err:  # noqa: BLE001 - the parent validates again in its own process, where it raises
        answer = ValidationAnswer(error=f"{type(err).__name__}: {err}")
    sys.stdout.write(answer.model_dump_json() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
