"""The rows of the multi-turn workload: one per turn (mt_turns) and one per conversation (mt_conversations,
written last: the conversation's ledger entry). Declared as data/rows.py declares its rows, the turn
carrying the same measurement columns as a run's request."""

from __future__ import annotations

import datetime as dt

from trbench.data.rows import F, I, S, Int64, Outcome, RequestFigures, StepKeys, _ServerRaw, _StreamRaw


class ConversationKeys(StepKeys):
    """What identifies one conversation (run_id: its id, the ledger key as for runs)."""

    num_gpu: I = None
    num_ctx: I = None
    temperature: F = None
    prompt_style: str  # chat | completion (base model)
    conversation_index: int
    dialogue_id: str  # the dialogue its user turns come from (generated-<topic> for made-up ones)
    source: str  # dataset | generated
    dialogues_digest: S = None  # the dialogues file's content digest (source dataset)
    concurrency: int  # conversations in flight at once
    max_tokens: int


class _TurnStart(ConversationKeys):
    turn_index: int  # 0: the first user message; turn k resends turns 0..k-1 with the server's answers
    history_messages: int  # messages sent with this turn, its own user message included (system not counted)
    is_warmup: bool = False  # a one-turn chat sent before the conversations: stored, left out of every figure
    sent_at: dt.datetime
    cache_state: str  # as RequestRow's: the server's counts, or what was asked where it reports none
    answer_check: S = None


class TurnRow(_StreamRaw, _ServerRaw, RequestFigures, Outcome, _TurnStart):
    """One turn of a conversation, with the same measurement columns as a run's request."""


class ConversationRow(ConversationKeys):
    """One conversation: its turns' counts; written after its turns, the ledger entry."""

    started_at: dt.datetime
    wall_s: float
    n_turns: int  # turns planned
    n_sent: int  # turns sent: a failed turn ends the conversation (the next one needs its answer)
    n_ok: int
    n_errors: int
    error_kinds: list[str] = []  # the kinds of the failed turns, sorted
    prompt_tokens_last: Int64 | None = None  # the last ok turn's prompt as the server counted it
    cached_tokens_total: Int64 | None = None  # null where the server reported no cached count
    valid: bool  # every planned turn answered
    invalid_reason: S = None
    manifest_digest: str

