"""bench/harness.py at a tiny size, run as people run it: its one line, with figures computed from what
was really received (the synthetic server's tokens counted on both clients, send and arrival times from
two processes on one clock), and its floor (a client that only stamps). No timing targets here: they live
in the bench's output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parent.parent / "bench" / "harness.py"
LINE = re.compile(r"harness: (\d+) streams, (\d+) tok/s ingested, timestamp error p99 ([\d.]+) ms, "
                  r"client CPU ([\d.]+) s per 1k tokens, bare httpx loop ([\d.]+) s per 1k tokens, ratio ([\d.]+)")
STREAMS, TOKENS, RATE = 3, 20, 200.0


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)


def test_one_line_from_real_measurements(tmp_path: Path) -> None:
    run = _bench("--streams", str(STREAMS), "--tokens", str(TOKENS), "--rate", str(RATE),
                 "--json", str(tmp_path / "fig.json"))
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert len(out) == 1
    m = LINE.fullmatch(out[0])
    assert m, out[0]
    fig = json.loads((tmp_path / "fig.json").read_text())
    ours, bare, floor = fig["trbench"], fig["bare"], fig["floor"]
    # every token the server sent was received, by the three clients, and none failed
    assert ours["tokens"] == bare["tokens"] == floor["tokens"] == STREAMS * TOKENS
    assert ours["failed"] == bare["failed"] == floor["failed"] == 0
    # the server never sends a token before its time (token i at least i / rate after the request came)
    assert ours["span_s"] >= (TOKENS - 1) / RATE and bare["span_s"] >= (TOKENS - 1) / RATE
    # send times from the server's process, arrival times from the client's, on one clock: every token
    # arrives after it was sent
    assert 0 < ours["error_min_ms"] <= ours["error_p99_ms"] <= ours["error_max_ms"]
    assert 0 < bare["error_min_ms"] and 0 < floor["error_min_ms"] <= floor["error_p99_ms"]
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
def test_bad_arguments_are_one_line_errors(args: list[str], message: str) -> None:
    run = _bench(*args)
    assert run.returncode == 2 and message in run.stderr and run.stdout == ""


def test_rounds_send_requests_of_spread_lengths_one_after_another(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        from bare_httpx import request_tokens
    finally:
        sys.path.remove(str(BENCH.parent))
    rounds = 3
    lengths = [request_tokens(s, r, TOKENS, rounds) for s in range(STREAMS) for r in range(rounds)]
    assert len(set(lengths)) > 1 and all(TOKENS // 2 <= n <= TOKENS * 3 // 2 + 1 for n in lengths)
    run = _bench("--streams", str(STREAMS), "--tokens", str(TOKENS), "--rate", str(RATE), "--rounds", str(rounds),
                 "--json", str(tmp_path / "fig.json"))
    assert run.returncode == 0, run.stderr
    fig = json.loads((tmp_path / "fig.json").read_text())
    # every token of every request, by both clients; a stream's requests follow each other
    assert fig["trbench"]["tokens"] == fig["bare"]["tokens"] == fig["floor"]["tokens"] == sum(lengths)
    longest_stream = max(sum(request_tokens(s, r, TOKENS, rounds) for r in range(rounds)) for s in range(STREAMS))
    assert fig["trbench"]["span_s"] >= (longest_stream - rounds) / RATE


def test_a_missed_p99_names_the_floor_of_the_same_run() -> None:
    sys.path.insert(0, str(BENCH.parent))
    try:
        from harness import missed
    finally:
        sys.path.remove(str(BENCH.parent))
    fig = {"streams": 256, "tok_s": 60_000.0, "error_p99_ms": 2.5, "ratio": 0.5, "floor": {"error_p99_ms": 1.4}}
    assert missed(fig) == ["timestamp error p99 2.500 >= 1.0 ms (a client that only stamps, bench/stamp_floor.py, "
                           "had p99 1.400 ms in the same run: the machine misses it too)"]
    fig["floor"]["error_p99_ms"] = 0.2  # the client's own miss: nothing blamed on the machine
    assert missed(fig)[0].endswith("had p99 0.200 ms in the same run)")
    assert missed(fig | {"error_p99_ms": 0.9}) == []
