"""The multi-turn workload (trbench/workloads/multi_turn.py) against the fake Ollama: every turn resends the
growing chat, each turn's server counts are stored as the server reported them (a cached count only where
it reports one, never guessed), a failed turn ends only its conversation, a resume measures nothing twice,
and the report section says only what its data shows."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tests.fakes.fake_ollama import DEFAULT_MODEL, FakeModel, FakeOllama
from trbench.config.multi_turn_section import DialoguesError, load_dialogues
from trbench.config.prompts import load_prompts
from trbench.config.spec import MatrixSpec, SpecError, parse_spec
from trbench.data import store
from trbench.data.environment import Manifest
from trbench.run.spec_checks import check_dialogues
from trbench.workloads import Measured, active
from trbench.workloads.multi_turn import MultiTurn, history, report_section, transcript
from trbench.workloads.session import TRSession, open_session
from trbench.workloads.steps import DirectSteps

ROOT = Path(__file__).resolve().parent.parent


def mt_spec(url: str, **section: object) -> MatrixSpec:
    return parse_spec({"tr_id": "mt", "provider": "external", "backend": "ollama", "urls": [url],
                       "models": [DEFAULT_MODEL], "grid": {"num_gpu": [80], "num_ctx": [1024]}, "single_agent": False,
                       "multi_turn": {"conversations": 2, "turns": 3, "max_tokens": 4,
                                      "dialogues": str(ROOT / "datasets/multi_turn/dialogues.yaml"), **section},
                       "prompts": str(ROOT / "datasets/prompts/single_agent.yaml")}, "test spec")


def session_for(spec: MatrixSpec, out: Path) -> TRSession:
    session = open_session(spec, load_prompts(spec.prompts), None, out, DirectSteps())
    session.manifest, session.digest = Manifest(spec=spec.model_dump(mode="json")), "digest"
    return session


def measure(session: TRSession) -> Measured:
    measured, workload = Measured(), MultiTurn()
    workload.execute(session, workload.plan(session), measured)
    return measured


def turns_of(root: Path) -> pd.DataFrame:
    return store.read_frame(root, "mt_turns").sort_values(["conversation_index", "turn_index"])


@pytest.mark.parametrize("reports_cached", [True, False])
def test_each_turn_resends_the_growing_chat_and_keeps_the_servers_counts(tmp_path, reports_cached):
    with FakeOllama(models={DEFAULT_MODEL: FakeModel()}, reports_cached=reports_cached) as server:
        session = session_for(mt_spec(server.url), tmp_path)
        measured = measure(session)
        chats = [b["messages"] for b in server.bodies("/api/chat")]
    assert [r["valid"] for r in measured.other["multi_turn"]] == [True, True]
    # the warm-up (one turn), then system + user, then each earlier turn and its answer added
    assert [len(m) for m in chats] == [2] + [2, 4, 6] * 2
    warmup, chats = chats[0], chats[1:]
    assert warmup[1] == chats[0][1] and warmup[0] != chats[0][0]  # the first user turn, with a prefix of its own
    first, second = chats[0], chats[1]
    assert second[:2] == first and second[2]["role"] == "assistant"
    assert second[2]["content"] == "The sky is blue"  # the answer as the server streamed it (4 tokens)
    assert chats[0][0]["content"].split()[0] != chats[3][0]["content"].split()[0]  # each conversation its own prefix
    stored = turns_of(session.root)
    assert stored["is_warmup"].sum() == 1 and stored.loc[stored["is_warmup"], "run_id"].str.contains("mtwarmup").all()
    turns = stored[~stored["is_warmup"]]
    assert turns["turn_index"].tolist() == [0, 1, 2] * 2 and turns["history_messages"].tolist() == [1, 3, 5] * 2
    for _, conv in turns.groupby("conversation_index"):
        prompt = conv["prompt_tokens"].tolist()
        assert prompt == sorted(prompt) and len(set(prompt)) == 3  # the prompt grows with the history
        if reports_cached:
            cached = conv["cached_tokens"].tolist()
            # turn k reuses turn k-1's whole prompt, as the fake's cache slot holds it
            assert cached[1:] == prompt[:-1] and cached[0] < prompt[0]
            assert conv["cache_state"].tolist()[1:] == ["partial", "partial"]
        else:
            assert conv["cached_tokens"].isna().all()  # not reported: null, never a guess
            assert conv["cache_state"].tolist() == ["cold_asked", "unknown", "unknown"]
    assert turns["ttft_ms"].notna().all() and turns["prefill_ms"].notna().all()
    md = report_section(session.root).markdown
    if reports_cached:
        assert "from its prompt cache instead of prefilling them" in md
    else:
        assert "reported no cached-token count" in md


def test_a_resumed_tr_does_not_measure_a_finished_conversation_again(tmp_path):
    with FakeOllama(models={DEFAULT_MODEL: FakeModel()}) as server:
        spec = mt_spec(server.url)
        measure(session_for(spec, tmp_path))
        sent = len(server.bodies("/api/chat"))
        root = tmp_path / "mt"
        gone = next((root / "mt_conversations").glob("model_slug=*/*mt001_a1.parquet"))
        gone.unlink()  # as if the flow had stopped before the second conversation was written
        again = MultiTurn().plan(session_for(spec, tmp_path))
        assert [p.conversation_index for p in again.units] == [1] and again.skipped == 1
        measure(session_for(spec, tmp_path))
        # a warm-up after the resumed TR's server load, then the second conversation's three turns only
        assert len(server.bodies("/api/chat")) == sent + 1 + 3
    assert len(store.read_frame(root, "mt_conversations")) == 2


def test_a_failing_server_is_recorded_and_ends_only_its_own_conversations(tmp_path):
    server = FakeOllama(models={DEFAULT_MODEL: FakeModel()})
    server.__enter__()
    session = session_for(mt_spec(server.url, concurrency=2), tmp_path)
    server.__exit__(None, None, None)  # gone before the first turn: the load fails
    measured = measure(session)
    rows = measured.other["multi_turn"]
    assert [r["valid"] for r in rows] == [False, False]
    assert all(r["invalid_reason"].startswith("instance failed:") for r in rows)
    md = report_section(session.root).markdown
    assert "2 conversations, 0 turns sent, 0 answered." in md and "2 conversations of 2 did not answer" in md


def test_a_failed_turn_ends_its_conversation_and_is_kept(tmp_path):
    with FakeOllama(models={DEFAULT_MODEL: FakeModel()}) as server:
        session = session_for(mt_spec(server.url, conversations=1), tmp_path)
        plan = MultiTurn().plan(session)
        server.models[DEFAULT_MODEL].fail = "mid_stream"  # loaded already; the first turn breaks off
        measured = Measured()
        MultiTurn().execute(session, plan, measured)
    (row,) = measured.other["multi_turn"]
    assert (row["n_sent"], row["n_ok"], row["n_errors"], row["valid"]) == (1, 0, 1, False)
    assert "turn 0 of 3 failed" in row["invalid_reason"]
    assert turns_of(session.root)["status"].tolist() == ["error", "error"]  # the warm-up failed as well


def test_the_completion_transcript_of_a_turn_starts_with_the_whole_turn_before():
    plan_messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "q1"}]
    one = transcript(plan_messages)
    two = transcript(plan_messages + [{"role": "assistant", "content": " a1"}, {"role": "user", "content": "q2"}])
    assert one == "S\n\nQuestion: q1\nAnswer:" and two.startswith(one + " a1")
    assert two.endswith("Question: q2\nAnswer:")


def test_history_puts_the_prefix_on_the_first_message_only(tmp_path):
    with FakeOllama() as server:
        plan = MultiTurn().plan(session_for(mt_spec(server.url), tmp_path)).units[0]
    msgs = history(plan, "abc", ["x"])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"].startswith("[abc] ") and not msgs[1]["content"].startswith("[")


# --- the spec --------------------------------------------------------------------------------------


def test_the_section_is_optional_and_its_errors_name_the_field():
    base = {"tr_id": "t", "models": ["smollm2:135m"]}
    assert parse_spec(base).multi_turn is None
    spec = parse_spec({**base, "single_agent": False, "multi_turn": {}})
    assert [w.name for w in active(spec)] == ["multi_turn"]
    for bad, field in [({"turns": 0}, "multi_turn.turns"), ({"concurrency": 0}, "multi_turn.concurrency"),
                       ({"source": "web"}, "multi_turn.source"), ({"turn": 3}, "multi_turn.turn"),
                       ({"models": ["other:1b"]}, "multi_turn.models")]:
        with pytest.raises(SpecError) as err:
            parse_spec({**base, "multi_turn": bad})
        message = str(err.value)
        assert "\n" not in message and field in message and "fix" in message.lower(), message


def test_a_dialogue_shorter_than_the_turns_asked_is_refused_before_anything_runs(tmp_path):
    spec = parse_spec({"tr_id": "t", "models": ["smollm2:135m"], "multi_turn": {"turns": 7}})
    with pytest.raises(SpecError, match=r"field 'multi_turn.turns': 7 turns, but dialogues garden"):
        check_dialogues(spec, "spec x")
    check_dialogues(spec.model_copy(update={"multi_turn": spec.multi_turn.model_copy(update={"source": "generated"})}),
                    "spec x")  # generated turns: any number
    with pytest.raises(DialoguesError, match="multi_turn.dialogues"):
        load_dialogues(tmp_path / "none.yaml")


# --- the report section, for every shape of data ------------------------------------------------------


def _section_of(tmp_path: Path, models: list[str], reports_cached: bool, **section: object) -> str:
    with FakeOllama(reports_cached=reports_cached) as server:
        spec = mt_spec(server.url, **section).with_overrides(models=models)
        measure(session_for(spec, tmp_path))
    return report_section(tmp_path / "mt").markdown


def _check(md: str) -> None:
    from tests.test_report_sentences import check_prose

    check_prose(md)
    assert not re.search(r"(?<![\d.])1 (conversation|turn)s\b", md), md
    assert not re.search(r"(?<![\d.])(0|[2-9]|\d\d+) (conversation|turn)\b(?! x)", md), md


def test_one_turn_says_there_is_no_history_to_compare(tmp_path):
    md = _section_of(tmp_path, [DEFAULT_MODEL], True, conversations=1, turns=1)
    _check(md)
    assert "1 conversation, 1 turn sent, 1 answered." in md
    assert "Only turn 1 has answered turns, so there is no longer history to compare" in md
    assert "No answered turn carried earlier turns' history" in md
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]  # the per-turn table: turn first
    assert [r.split("|")[1:3] for r in rows] == [[" 1 ", " 1 "]]  # turn 1 and its one answered turn, no turn 2


def test_two_models_get_a_part_each_and_the_growth_sentence_names_first_and_last_turn(tmp_path):
    md = _section_of(tmp_path, [DEFAULT_MODEL, "fake-thinker:1b"], True, turns=3)
    _check(md)
    assert md.count("### ") == 2 and f"### {DEFAULT_MODEL}, gpu80_ctx1024_temp0.8" in md
    assert md.count("at turn 1 and ") == 2 and md.count(" ms at turn 3, with a median prompt of ") == 2


def test_a_count_missing_on_some_turns_is_said_to_cover_only_the_others(tmp_path):
    _section_of(tmp_path, [DEFAULT_MODEL], True, conversations=1, turns=3)
    (path,) = (tmp_path / "mt" / "mt_turns").glob("model_slug=*/*_mt000_a1.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    cached = table.column("cached_tokens").to_pylist()
    cached[2] = None  # as a server that stopped reporting it
    table = table.set_column(table.schema.get_field_index("cached_tokens"), "cached_tokens",
                             pa.array(cached, pa.int64()))
    pq.write_table(table, path)
    md = report_section(tmp_path / "mt").markdown
    _check(md)
    kept = table.to_pandas()
    assert (f"On the turns after the first (the 1 turn whose count the server reported), the server took "
            f"{int(kept['cached_tokens'][1]):,} of {int(kept['prompt_tokens'][1]):,} prompt tokens") in md


def test_a_report_of_conversations_alone_says_what_was_measured(tmp_path):
    from trbench.report import build_report, render_html, render_markdown

    _section_of(tmp_path, [DEFAULT_MODEL], True, conversations=1, turns=2)
    data = build_report(tmp_path / "mt")
    md, html = render_markdown(data), render_html(data)
    assert "- Measured: Multi-turn conversations (each in its own section below)" in md
    assert "- Measured: Multi-turn conversations; the figures are in its own section." in md
    assert "Nothing was measured" not in md and "Measured: nothing" not in md + html
    assert "## Multi-turn conversations" in md and "<h2>Multi-turn conversations</h2>" in html


def test_the_tr_outcome_counts_conversations_and_fails_when_none_answered(tmp_path):
    from trbench.tr.outcome import Outcome, conversations_outcome as with_outcome

    spec = parse_spec({"tr_id": "t", "models": ["m:1"], "single_agent": False, "multi_turn": {}})
    good = {"run_id": "c0", "valid": True, "invalid_reason": None}
    bad = {"run_id": "c1", "valid": False, "invalid_reason": "turn 0 of 4 failed (connect): the conversation ended there"}
    alone = with_outcome(None, spec, tmp_path, [good, bad], tmp_path / "r.md", None)
    assert alone.completed and alone.message.startswith("t: 1 of 2 conversations answered every turn; report ")
    failed = with_outcome(None, spec, tmp_path, [bad], tmp_path / "r.md", None)
    assert not failed.completed and failed.message.startswith("conversation c1 invalid: turn 0 of 4 failed")
    cut = with_outcome(None, spec, tmp_path, [], tmp_path / "r.md", "stopped by Ctrl-C")
    assert not cut.completed and cut.message.startswith("stopped by Ctrl-C; t: 0 of 0")
    joint = with_outcome(Outcome(completed=True, message="t: 3 of 3 runs valid"), spec, tmp_path, [good],
                         tmp_path / "r.md", None)
    assert joint.completed and joint.message == "t: 3 of 3 runs valid; multi-turn: 1 of 1 conversation answered every turn"
