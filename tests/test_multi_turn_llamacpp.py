"""The multi-turn workload on a real llama.cpp server (the embedded engine, SmolLM2, which has a chat
template): through the TR's own opening (servers started, model facts read), two conversations of three
turns at once on two slots. Each turn's prompt, as llama.cpp counts it, grows with the history, and so does
the part it reports serving from its prompt cache (timings.cache_n): each turn reuses the chat before it."""

from __future__ import annotations

from pathlib import Path

import pytest

from trbench.config.prompts import load_prompts
from trbench.config.spec import parse_spec
from trbench.data import store
from trbench.tr.opening import start_servers
from trbench.workloads import Measured
from trbench.workloads.multi_turn import MultiTurn, report_section
from trbench.workloads.session import open_session
from trbench.workloads.steps import DirectSteps

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def test_cached_tokens_reported_by_llamacpp_grow_with_the_history(tmp_path, free_ports):
    spec = parse_spec({"tr_id": "mt-llamacpp", "models": ["smollm2:135m"],
                       "server": {"ports": free_ports(1), "slots": 2}, "grid": {"num_ctx": [4096], "temperature": [0.0]},
                       "single_agent": False, "seed": 7, "max_tokens": 8,
                       "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"),
                       "multi_turn": {"conversations": 2, "turns": 3, "concurrency": 2,
                                      "dialogues": str(ROOT / "datasets/multi_turn/dialogues.yaml")}}, "test spec")
    session = open_session(spec, load_prompts(spec.prompts), None, tmp_path, DirectSteps())
    try:
        start_servers(session)
        workload, measured = MultiTurn(), Measured()
        planned = workload.plan(session)
        assert {p.prompt_style for p in planned.units} == {"chat"}  # SmolLM2's GGUF has a chat template
        workload.execute(session, planned, measured)
    finally:
        session.close()
    assert [r["valid"] for r in measured.other["multi_turn"]] == [True, True]
    stored = store.read_frame(session.root, "mt_turns")
    assert stored["is_warmup"].sum() == 1
    turns = stored[~stored["is_warmup"]].sort_values(["conversation_index", "turn_index"])
    for _, conv in turns.groupby("conversation_index"):
        prompt, cached = conv["prompt_tokens"].tolist(), conv["cached_tokens"].tolist()
        print(conv[["turn_index", "prompt_tokens", "cached_tokens", "ttft_ms", "prefill_ms"]].to_string())
        assert all(a < b for a, b in zip(prompt, prompt[1:])), prompt
        assert all(a < b for a, b in zip(cached, cached[1:])), cached
        # turn k finds turn k-1's whole prompt in its slot (the answer after it is re-tokenized, maybe otherwise)
        assert all(c >= p - 2 for c, p in zip(cached[1:], prompt)), (prompt, cached)
        assert cached[0] < prompt[0] / 2  # the first turn is cold: its prefix is its own
    assert turns["ttft_ms"].notna().all() and turns["decode_tps"].notna().all()
    md = report_section(session.root).markdown
    assert "### smollm2:135m" in md and "from its prompt cache instead of prefilling them" in md
