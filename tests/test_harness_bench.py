"""bench/harness.py at a tiny size: its one line, with figures computed from what was really received
(the synthetic server's tokens counted on both clients, timestamps from two processes on one clock).
No timing targets here: they live in the bench's output (`make bench-harness`)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "harness.py"
LINE = re.compile(r"harness: (\d+) streams, (\d+) tok/s ingested, timestamp error p99 ([\d.]+) ms, "
                  r"client CPU ([\d.]+) s per 1k tokens, bare httpx loop ([\d.]+) s per 1k tokens, ratio ([\d.]+)")
STREAMS, TOKENS, RATE = 3, 20, 200.0


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("bench_harness", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_line_from_real_measurements(harness, capsys: pytest.CaptureFixture[str]) -> None:
    fig = harness.main(["--streams", str(STREAMS), "--tokens", str(TOKENS), "--rate", str(RATE)])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    m = LINE.fullmatch(out[0])
    assert m, out[0]
    ours, bare = fig["trbench"], fig["bare"]
    # every token the server sent was received, by both clients, and none failed
    assert ours["tokens"] == bare["tokens"] == STREAMS * TOKENS
    assert ours["failed"] == bare["failed"] == 0
    # the server never sends a token before its time (token i at i / rate after the request came)
    assert ours["span_s"] >= (TOKENS - 1) / RATE and bare["span_s"] >= (TOKENS - 1) / RATE
    # send times from the server's process, arrival times from the client's, on one clock: every token
    # arrives after it was sent
    assert 0 < ours["error_min_ms"] <= ours["error_p99_ms"] <= ours["error_max_ms"]
    assert 0 < bare["error_min_ms"]
    assert ours["cpu_s"] > 0 and bare["cpu_s"] > 0
    # the line says what was measured
    assert int(m[1]) == STREAMS
    assert int(m[2]) == round(ours["tokens"] / ours["span_s"])
    assert float(m[3]) == pytest.approx(ours["error_p99_ms"], abs=5e-4)
    assert float(m[4]) == pytest.approx(ours["cpu_s"] / ours["tokens"] * 1000, abs=5e-5)
    assert float(m[5]) == pytest.approx(bare["cpu_s"] / bare["tokens"] * 1000, abs=5e-5)
    assert float(m[6]) == pytest.approx(fig["client_cpu"] / fig["bare_cpu"], abs=5e-3)


@pytest.mark.parametrize(("args", "message"), [(["--streams", "0"], "--streams must be at least 1"),
                                               (["--rate", "0"], "--rate must be above 0")])
def test_bad_arguments_are_one_line_errors(harness, capsys: pytest.CaptureFixture[str], args: list[str],
                                           message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        harness.main(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
