"""Multi-turn conversations (spec `multi_turn:`): per model x config, conversations whose every turn resends
the whole chat so far (the user turns, and the assistant turns as the server answered them), up to
`concurrency` conversations in flight at once. Each turn records its TTFT, the server's prefill time, prompt
and cached-token counts, and decode rate; each conversation is written as soon as it ends (its turns, then
its row, the ledger entry), so a resumed TR measures only the conversations not yet written.

A conversation's first message starts with a prefix no other conversation has: its first turn is cold, and
what the server serves from its cache later is its own history. A failed turn ends its conversation (the
next turn would need its answer); a server that will not load for a config leaves that config's
conversations recorded with the reason, and the rest goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from trbench.backends import ChatRequest, RawExchange, backend_kind, event_loop
from trbench.config.multi_turn_section import Dialogue, MultiTurnSpec, generated_dialogue, load_dialogues
from trbench.config.paths import resolve_path
from trbench.config.spec import Cell, MatrixSpec
from trbench.data import store
from trbench.data.conversation_rows import ConversationRow, TurnRow
from trbench.data.cells import config_label
from trbench.data.store import slug
from trbench.engines import Instance, ollama_api
from trbench.engines.model_kind import prompt_style
from trbench.measure import metrics
from trbench.prose import count
from trbench.run import progress
from trbench.run.load_step import AsyncChat, ClientFactory, _failed, wire_client
from trbench.run.single import Gate, generation_request, prompt_text, request_row, unique_prefix, utc
from trbench.workloads.protocol import Measured, Planned, ReportPart

if TYPE_CHECKING:
    from trbench.workloads.session import TRSession

KIND = "multi_turn"  # store.TABLES: mt_turns/, mt_conversations/


class ConversationPlan(BaseModel):
    """Everything that identifies one conversation of one cell, its user turns included."""

    tr_id: str
    cell: Cell
    conversation_index: int
    attempt: int = 1
    instance: str
    instance_url: str
    prompt_style: Literal["chat", "completion"] = "chat"
    dialogue: Dialogue
    system: str | None = None
    source: str
    dialogues_digest: str | None = None
    concurrency: int
    max_tokens: int
    warmup: bool = False  # a one-turn chat before the conversations: its turn is stored, it has no conversation row

    @property
    def run_id(self) -> str:
        kind = "mtwarmup" if self.warmup else "mt"
        return f"{slug(self.cell.model)}_{self.cell.label}_{kind}{self.conversation_index:03d}_a{self.attempt}"


class Turn(BaseModel):
    """One turn as it went: its place, the messages it sent, its request and what the server answered."""

    index: int
    history_messages: int
    request: ChatRequest
    exchange: RawExchange


def section(spec: MatrixSpec) -> MultiTurnSpec:
    assert spec.multi_turn is not None  # planned only from a spec that has the section
    return spec.multi_turn


def plan_conversations(spec: MatrixSpec, inst: Instance, facts: dict | None = None) -> list[ConversationPlan]:
    """Every conversation of every cell of the section's models, in cell order; a base model (facts: no chat
    template) is prompted as plain-text completion, as in the matrix."""
    mt = section(spec)
    models = mt.models or spec.models
    suite = load_dialogues(resolve_path(mt.dialogues), mt.turns) if mt.source == "dataset" else None
    plans = []
    for cell in (c for c in spec.cells() if c.model in models):
        for i in range(mt.conversations):
            dialogue = suite.dialogues[i % len(suite.dialogues)] if suite else generated_dialogue(i, mt.turns)
            plans.append(ConversationPlan(
                tr_id=spec.tr_id, cell=cell, conversation_index=i, instance=inst.name, instance_url=inst.url,
                prompt_style=prompt_style((facts or {}).get(cell.model)),
                dialogue=dialogue.model_copy(update={"turns": dialogue.turns[:mt.turns]}),
                system=suite.system if suite else None, source=mt.source,
                dialogues_digest=suite.digest if suite else None, concurrency=mt.concurrency,
                max_tokens=mt.max_tokens or spec.max_tokens))
    return plans


def history(plan: ConversationPlan, unique: str, answers: list[str]) -> list[dict[str, str]]:
    """The messages of turn len(answers): the system text, then each earlier user turn with the server's
    answer to it, then this turn's user message; the first message carries the conversation's prefix."""
    messages = [{"role": "system", "content": plan.system}] if plan.system else []
    for user, answer in zip(plan.dialogue.turns, answers):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": plan.dialogue.turns[len(answers)]})
    messages[0] = {**messages[0], "content": f"[{unique}] {messages[0]['content']}"}
    return messages


def transcript(messages: list[dict[str, str]]) -> str:
    """A chat as plain text for a base model, each earlier answer after its question, so that every turn's
    text starts with the whole text of the turn before it (the server's cache can match it)."""
    parts = [m["content"] for m in messages if m["role"] == "system"]
    chat = [m for m in messages if m["role"] != "system"]
    parts += [f"Question: {q['content']}\nAnswer:{a['content']}" for q, a in zip(chat[0::2], chat[1::2])]
    return "\n\n".join(parts + [f"Question: {chat[-1]['content']}\nAnswer:"])


def turn_request(spec: MatrixSpec, plan: ConversationPlan, messages: list[dict[str, str]]) -> ChatRequest:
    req = generation_request(plan.cell.model, messages, "chat", plan.cell, plan.max_tokens, spec.seed)
    return req.model_copy(update={"prompt": transcript(messages)}) if plan.prompt_style == "completion" else req


async def converse(spec: MatrixSpec, plan: ConversationPlan, client: AsyncChat, gate: Gate | None) -> list[Turn]:
    """The conversation's turns, one after the other; a failed turn is the last one sent."""
    unique = unique_prefix()
    answers: list[str] = []
    turns: list[Turn] = []
    for index in range(len(plan.dialogue.turns)):
        if gate:
            gate.check()
        messages = history(plan, unique, answers)
        req = turn_request(spec, plan, messages)
        t_send = time.perf_counter_ns()
        try:
            ex = await client.chat(req)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as err:  # noqa: BLE001 - recorded; the conversation ends, the others go on
            ex = _failed(req, spec.backend, plan.instance_url, err, t_send)
        turns.append(Turn(index=index, history_messages=sum(m["role"] != "system" for m in messages), request=req,
                          exchange=ex))
        if ex.status != "ok":
            break
        answers.append(ex.text)
    return turns


def conversation_keys(spec: MatrixSpec, plan: ConversationPlan) -> dict[str, Any]:
    c = plan.cell
    return {"tr_id": plan.tr_id, "run_id": plan.run_id, "attempt": plan.attempt, "model": c.model,
            "provider": spec.provider, "backend": spec.backend, "instance": plan.instance,
            "instance_url": plan.instance_url, "num_gpu": c.num_gpu, "num_ctx": c.num_ctx,
            "temperature": c.temperature, "prompt_style": plan.prompt_style,
            "conversation_index": plan.conversation_index, "dialogue_id": plan.dialogue.id, "source": plan.source,
            "dialogues_digest": plan.dialogues_digest, "concurrency": plan.concurrency, "max_tokens": plan.max_tokens}


def turn_rows(keys: dict[str, Any], plan: ConversationPlan, turns: list[Turn]) -> list[dict[str, Any]]:
    """The turns' rows, through the run requests' own row builder (the same metrics, defined once); the
    first turn asked for a cold prompt, the later ones for nothing but their history."""
    return [request_row(keys, t.index, plan.warmup, f"{plan.dialogue.id}#{t.index}", t.exchange, prompt_text(t.request),
                        "cold" if t.index == 0 else None, model=TurnRow, turn_index=t.index,
                        history_messages=t.history_messages)
            for t in turns]


def conversation_row(keys: dict[str, Any], plan: ConversationPlan, rows: list[dict[str, Any]], started: float,
                     wall_s: float, digest: str, reason: str | None = None) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    errors = [r for r in rows if r["status"] != "ok"]
    n_turns = len(plan.dialogue.turns)
    if reason is None and len(ok) < n_turns:
        reason = (f"turn {len(ok)} of {n_turns} failed ({', '.join(metrics.error_kinds(errors)) or 'unknown'}): "
                  "the conversation ended there")
    cached = [r["cached_tokens"] for r in ok]
    return ConversationRow(
        **keys, started_at=utc(started), wall_s=wall_s, n_turns=n_turns, n_sent=len(rows), n_ok=len(ok),
        n_errors=len(errors), error_kinds=metrics.error_kinds(errors),
        prompt_tokens_last=ok[-1]["prompt_tokens"] if ok else None,
        cached_tokens_total=None if not ok or None in cached else sum(cached),
        valid=reason is None, invalid_reason=reason, manifest_digest=digest,
    ).model_dump()


def prepare(spec: MatrixSpec, inst: Instance, cell: Cell) -> None:
    """The server ready for the cell before its first turn, as for a load step (run.load_step.prepare_server):
    the embedded engine (re)starts llama.cpp; Ollama loads the model with the turns' options."""
    inst.prepare(cell)
    if backend_kind(spec.backend).loads_per_request:
        ollama_api.load(inst.url, cell.model, {"num_ctx": cell.num_ctx, "num_gpu": cell.num_gpu},
                        spec.load_timeout_s, api_key_env=inst.api_key_env)


def record_failed(session: TRSession, plans: list[ConversationPlan], reason: str) -> list[dict[str, Any]]:
    """Conversations that could not start (their server would not load) keep their rows, with the reason."""
    out = []
    for plan in plans:
        keys = conversation_keys(session.spec, plan)
        row = conversation_row(keys, plan, [], time.time(), 0.0, session.digest, reason=f"instance failed: {reason}")
        store.write_run(session.root, row, [], session.manifest, kind=KIND)
        out.append(row)
    return out


def warmup_plans(spec: MatrixSpec, plans: list[ConversationPlan]) -> list[ConversationPlan]:
    """The cell's warm-ups: the first turn of its first conversation, each with a prefix of its own."""
    first = plans[0]
    one = first.dialogue.model_copy(update={"turns": first.dialogue.turns[:1]})
    return [first.model_copy(update={"warmup": True, "conversation_index": w, "dialogue": one})
            for w in range(section(spec).warmup_requests)]


async def warm_up(session: TRSession, plans: list[ConversationPlan], client: AsyncChat) -> None:
    """Send the warm-ups one after the other and store their turns (no conversation row: a resume sends them
    again, after its own server load)."""
    s = session
    meta = {store.MANIFEST_KEY: s.manifest.json_text().encode()}
    for plan in plans:
        turns = await converse(s.spec, plan, client, s.gate)
        rows = turn_rows(conversation_keys(s.spec, plan), plan, turns)
        table = pa.Table.from_pylist(rows, schema=store.MT_TURN_SCHEMA.with_metadata(meta))
        path = store.run_file(s.root, "mt_turns", plan.cell.model, plan.run_id)
        await asyncio.to_thread(store.write_table_atomic, path, table)


def measure_cell(session: TRSession, inst: Instance, plans: list[ConversationPlan],
                 make_client: ClientFactory | None = None) -> list[dict[str, Any]]:
    """One cell's conversations not yet written, `concurrency` at once, each written as it ends; their rows."""
    s = session
    s.gate.check()
    try:
        prepare(s.spec, inst, plans[0].cell)
    except Exception as err:  # noqa: BLE001 - recorded, the other cells go on
        return record_failed(s, plans, str(err))
    factory = make_client or wire_client(s.spec)
    written: list[dict[str, Any]] = []

    async def one(plan: ConversationPlan, client: AsyncChat, slots: asyncio.Semaphore) -> None:
        async with slots:
            progress.emit(kind="run_started", run_id=plan.run_id)
            started, t0 = time.time(), time.perf_counter()
            turns = await converse(s.spec, plan, client, s.gate)
            wall_s = time.perf_counter() - t0
            s.gate.check()  # the server may have been stopped under this conversation: not written
            keys = conversation_keys(s.spec, plan)
            rows = turn_rows(keys, plan, turns)
            row = conversation_row(keys, plan, rows, started, wall_s, s.digest)
            # off the event loop: the other conversations' streams are being timed
            await asyncio.to_thread(store.write_run, s.root, row, rows, s.manifest, KIND)
            progress.emit(kind="run_finished", run_id=plan.run_id, valid=row["valid"])
            written.append(row)

    async def run() -> None:
        client = factory(s.spec.backend, inst.url)
        slots = asyncio.Semaphore(plans[0].concurrency)
        try:
            await warm_up(s, warmup_plans(s.spec, plans), client)
            await asyncio.gather(*(one(p, client, slots) for p in plans))
        finally:
            await client.aclose()

    event_loop.run(run())
    s.steps.log.info("multi-turn %s %s: %d conversation(s), %d valid", plans[0].cell.model, plans[0].cell.label,
                     len(written), sum(r["valid"] for r in written))
    return sorted(written, key=lambda r: r["conversation_index"])


class MultiTurn:
    """Conversations whose history grows turn by turn (spec `multi_turn:`)."""

    name: ClassVar[str] = "multi_turn"
    tables: ClassVar[tuple[str, ...]] = ("mt_conversations", "mt_turns")

    def wanted(self, spec: MatrixSpec, rerun: bool) -> bool:
        return spec.multi_turn is not None and not rerun

    def plan(self, session: TRSession) -> Planned:
        every = plan_conversations(session.spec, session.live[0], session.facts)
        done = store.finished_run_ids(session.root, KIND)
        todo = [p for p in every if p.run_id not in done]
        return Planned(units=todo, runs=len(todo), skipped=len(every) - len(todo),
                       extra={"instance": session.live[0]})

    def execute(self, session: TRSession, planned: Planned, measured: Measured) -> None:
        todo: list[ConversationPlan] = planned.units  # the TR announced them: Planned.runs
        for cell in dict.fromkeys(p.cell for p in todo):
            plans = [p for p in todo if p.cell == cell]
            rows = session.steps.call("multi-turn-cell", f"multi-turn {cell.model} {cell.label}", measure_cell,
                                      session, planned.extra["instance"], plans)
            measured.other.setdefault(self.name, []).extend(rows)

    def report_section(self, root: Path) -> ReportPart | None:
        return report_section(root)


# --- the report's section, from the stored tables alone ---------------------------------------------------

_CONFIG = ["model", "num_gpu", "num_ctx", "temperature"]
_TURN_COLUMNS = [*_CONFIG, "run_id", "turn_index", "is_warmup", "status", "ttft_ms", "prompt_tokens", "cached_tokens",
                 "prefill_ms", "decode_tps"]
_CONVERSATION_COLUMNS = [*_CONFIG, "run_id", "valid", "invalid_reason"]
INTRO = ("Each conversation resends its whole chat so far at every turn (the user turns and the answers the "
         "server gave), so the prompt grows turn by turn. Per turn, across the conversations of a model and config: "
         "how many turns were answered, and the medians of the prompt as the server counted it, of the part it "
         "served from its prompt cache (n/a where the server does not report it), of TTFT, of the "
         "server's prefill time and of its decode rate. Warm-up requests, sent after each server load, are left out.")


def _num(v: Any, digits: int = 0) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{float(v):,.{digits}f}"


def _median(values: pd.Series) -> float | None:
    clean = values.dropna()
    return float(clean.median()) if len(clean) else None


def turn_table(ok: pd.DataFrame) -> list[str]:
    """Per turn index of one model and config: its ok turns and their medians."""
    lines = ["| Turn | Ok turns | Prompt tokens | Cached tokens | TTFT ms | Prefill ms | Decode tok/s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for index, turns in ok.groupby("turn_index", sort=True):
        lines.append(f"| {int(index) + 1} | {len(turns)} | {_num(_median(turns['prompt_tokens']))} | "
                     f"{_num(_median(turns['cached_tokens']))} | {_num(_median(turns['ttft_ms']))} | "
                     f"{_num(_median(turns['prefill_ms']), 1)} | {_num(_median(turns['decode_tps']), 1)} |")
    return lines


def growth_sentence(ok: pd.DataFrame) -> str:
    """How the median TTFT and prompt moved from the first answered turn to the last, in the order measured."""
    timed = ok.dropna(subset=["ttft_ms"])
    indices = sorted(timed["turn_index"].unique())
    if not indices:
        return "No turn was answered with a first token, so there is no TTFT to compare."
    if len(indices) == 1:
        return (f"Only turn {int(indices[0]) + 1} has answered turns, so there is no longer history to compare its "
                f"median TTFT of {_num(_median(timed['ttft_ms']))} ms with.")
    first, last = (timed[timed["turn_index"] == i] for i in (indices[0], indices[-1]))
    return (f"Median TTFT was {_num(_median(first['ttft_ms']))} ms at turn {int(indices[0]) + 1} and "
            f"{_num(_median(last['ttft_ms']))} ms at turn {int(indices[-1]) + 1}, with a median prompt of "
            f"{_num(_median(first['prompt_tokens']))} and {_num(_median(last['prompt_tokens']))} tokens.")


def cache_sentence(ok: pd.DataFrame) -> str:
    """What the prompt cache saved on the turns that carry history: cached over prompt tokens, as the server
    counted both; nothing is said of a turn whose server reported no cached count."""
    later = ok[(ok["turn_index"] > 0) & ok["prompt_tokens"].notna()]
    if later.empty:
        return "No answered turn carried earlier turns' history, so the prompt cache had nothing of it to serve."
    counted = later[later["cached_tokens"].notna()]
    if counted.empty:
        return ("The server reported no cached-token count (older Ollama does not), so what its prompt cache "
                "saved is not known.")
    cached, prompt = int(counted["cached_tokens"].sum()), int(counted["prompt_tokens"].sum())
    share = f" ({cached / prompt * 100:.0f} %)" if prompt else ""
    where = "" if len(counted) == len(later) else f" (the {count(len(counted), 'turn')} whose count the server reported)"
    return (f"On the turns after the first{where}, the server took {cached:,} of {prompt:,} prompt tokens{share} "
            "from its prompt cache instead of prefilling them.")


def failure_sentence(conversations: pd.DataFrame) -> str | None:
    bad = conversations[~conversations["valid"].astype(bool)]
    if bad.empty:
        return None
    reasons = "; ".join(sorted({str(r) for r in bad["invalid_reason"].dropna()})[:3])
    return (f"{count(len(bad), 'conversation')} of {len(conversations)} did not answer every turn"
            + (f": {reasons}." if reasons else "."))


def report_section(root: Path) -> ReportPart | None:
    """The section: per model and config, the turn table, TTFT growth, the cache's saving and any failures."""
    conversations = store.read_frame(root, "mt_conversations", _CONVERSATION_COLUMNS)
    if conversations.empty:
        return None
    turns = store.read_frame(root, "mt_turns", _TURN_COLUMNS)
    parts = [INTRO]
    for key, convs in conversations.groupby(_CONFIG, sort=True, dropna=False):
        model, num_gpu, num_ctx, temperature = key
        mine = turns[turns["run_id"].isin(convs["run_id"]) & ~turns["is_warmup"].astype(bool)]
        ok = mine[mine["status"] == "ok"]
        heading = f"### {model}, {config_label(num_gpu, num_ctx, temperature)}"
        said = [f"{count(len(convs), 'conversation')}, {count(len(mine), 'turn')} sent, {len(ok)} answered."]
        if not ok.empty:
            said += [growth_sentence(ok), cache_sentence(ok)]
        said += [s for s in (failure_sentence(convs),) if s]
        parts += [heading, " ".join(said)] + (["\n".join(turn_table(ok))] if not ok.empty else [])
    return ReportPart(title="Multi-turn conversations", markdown="\n\n".join(parts))
