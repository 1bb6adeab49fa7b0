"""The `multi_turn:` section of a spec: conversations whose history grows turn by turn, and the user
turns they send.

    multi_turn:
      conversations: 4        # per model x config
      turns: 4                # user turns per conversation, each resending the whole chat so far
      max_tokens: 48          # per turn; default: the spec's
      concurrency: 1          # conversations in flight at once
      warmup_requests: 1      # one-turn chats before the conversations, stored, left out of every figure
      source: dataset         # dataset: the dialogues file's user turns; generated: made-up follow-ups
      dialogues: datasets/multi_turn/dialogues.yaml
      models: [smollm2:135m]  # default: the spec's models

Conversation i takes dialogue i of the file (cycling); its first message starts with a prefix no other
conversation has, so its first turn is cold and every later turn can only reuse its own history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trbench.config.sections import _Strict
from trbench.config.servers import unique
from trbench.config.suite_files import content_digest, read_suite
from trbench.prose import noun, verb

DEFAULT_DIALOGUES = "datasets/multi_turn/dialogues.yaml"
TurnSource = Literal["dataset", "generated"]


class MultiTurnSpec(_Strict):
    """Multi-turn conversations: per model x config, `conversations` conversations of `turns` turns."""

    conversations: int = Field(default=4, ge=1, le=10_000, description="conversations per model x config")
    turns: int = Field(default=4, ge=1, le=100, description="user turns per conversation; each turn resends the "
                       "whole chat so far (user and assistant messages as the server answered them)")
    max_tokens: int | None = Field(default=None, ge=1, le=131_072, description="generated tokens per turn; default: "
                                   "the spec's max_tokens")
    concurrency: int = Field(default=1, ge=1, le=1024, description="conversations in flight at once (each sends its "
                             "turns one after the other)")
    source: TurnSource = Field(default="dataset", description="where the user turns come from: dataset (the "
                               "dialogues file) or generated (numbered follow-ups on a topic per conversation)")
    dialogues: str = Field(default=DEFAULT_DIALOGUES, description="YAML file of dialogues (datasets/multi_turn/); "
                           "read with source: dataset")
    warmup_requests: int = Field(default=1, ge=0, le=100, description="one-turn chats per model x config before its "
                                 "conversations (after the server load): stored in mt_turns with is_warmup, left out "
                                 "of every figure, so that turn 1 is not timed with the server's first-request costs")
    models: list[str] | None = Field(default=None, description="models to converse with; default: the spec's models")

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        return unique(v) if v else v


class Dialogue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    turns: list[str] = Field(min_length=1)


class Dialogues(BaseModel):
    """A dialogues file: per dialogue, its user turns in order; the system text opens every conversation."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    system: str | None = None
    dialogues: list[Dialogue] = Field(min_length=1)
    digest: str = ""


class DialoguesError(ValueError):
    pass


def load_dialogues(path: str | Path, turns: int | None = None) -> Dialogues:
    """The dialogues file with its content digest; DialoguesError in one line naming the spec field when it is
    missing, malformed, or holds a dialogue shorter than `turns`."""
    suite, raw = read_suite(Path(path), Dialogues, DialoguesError, "multi_turn.dialogues",
                            f"point it at a dialogues file such as {DEFAULT_DIALOGUES}", DEFAULT_DIALOGUES,
                            detail_lines=3)
    short = [d.id for d in suite.dialogues if turns is not None and len(d.turns) < turns]
    if short:
        raise DialoguesError(f"spec field 'multi_turn.turns': {turns} turns, but {noun('dialogue', len(short))} "
                             f"{', '.join(short)} of {path} {verb('holds', len(short))} fewer user turns; fix: lower multi_turn.turns, add turns to those "
                             "dialogues, or set multi_turn.source: generated")
    return suite.model_copy(update={"digest": content_digest(raw)})


_TOPICS = ("tea", "bicycles", "rivers", "clocks", "bridges", "owls", "maps", "violins")


def generated_dialogue(index: int, turns: int) -> Dialogue:
    """Conversation `index`'s made-up user turns: a topic, then numbered requests for one more sentence on it."""
    topic = _TOPICS[index % len(_TOPICS)]
    first = f"Tell me one interesting fact about {topic}."
    more = [f"Follow-up {k}: give one more fact about {topic}, different from the ones so far." for k in range(1, turns)]
    return Dialogue(id=f"generated-{topic}", turns=[first, *more])
