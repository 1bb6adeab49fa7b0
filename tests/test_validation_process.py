"""The validation's own process: the same result as validating in this process, at the lowest CPU
priority while it waits (at this one's once the measuring ends), gone when closed, and a child that cannot answer never loses the result."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from trbench.validation import validate as validation
from trbench.validation.worker import ValidationProcess

from test_validation import EXPECTED, TR_ID, build_tr


@pytest.fixture(scope="module")
def tr(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("planted") / TR_ID
    return root, build_tr(root, defects=True)


def _comparable(result: validation.ValidationResult) -> dict:
    return result.model_dump(exclude={"elapsed_s"})


def test_the_process_gives_what_validating_here_gives(tr):
    root, report = tr
    with ValidationProcess() as checker:
        assert os.getpriority(os.PRIO_PROCESS, checker._proc.pid) == 19  # only idle cycles while measuring
        there = checker.validate(root, EXPECTED, report)
    here = validation.validate_tr(root, EXPECTED, report)
    assert not there.success and there.failures  # the planted defects: a result that could differ
    assert _comparable(there) == _comparable(here)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a privileged process may lower a nice value")
def test_once_the_measuring_ends_the_process_runs_at_this_ones_priority():
    with ValidationProcess() as checker:
        checker.unthrottle()
        assert os.getpriority(os.PRIO_PROCESS, checker._proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)


def test_closing_ends_the_process(tr):
    checker = ValidationProcess()
    proc = checker._proc
    checker.close()
    assert proc.poll() is not None
    checker.close()  # twice is harmless


def test_a_process_that_died_is_replaced_by_validating_here(tr, caplog):
    root, report = tr
    checker = ValidationProcess()
    checker._proc.kill()
    checker._proc.wait()
    with caplog.at_level(logging.WARNING, logger="trbench.validation"):
        result = checker.validate(root, EXPECTED, report)
    assert _comparable(result) == _comparable(validation.validate_tr(root, EXPECTED, report))
    assert "validating here" in caplog.text


def test_claim_takes_the_process_started_early_once():
    ValidationProcess.start_early()
    first = ValidationProcess.claim()
    second = ValidationProcess.claim()
    try:
        assert first is not second and first._proc is not None and second._proc is not None
    finally:
        first.close()
        second.close()
