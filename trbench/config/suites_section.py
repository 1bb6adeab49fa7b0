"""The spec's `suites:` section: which quality suites a TR runs beside its speed matrix, and how
much of each. The suites themselves live in datasets/ (trbench/suites/ reads them).

    suites:
      scenarios: [router]     # any of router, orchestrator, chat (datasets/scenarios/<name>.yaml)
      qa: true                # the WattBot-style QA suite (datasets/qa/qa.yaml)
      messages: 4             # per scenario and run: evenly spread over the suite's messages
      questions: 3            # QA questions per run: evenly spread, the unanswerable ones included
      max_tokens: 48          # null: each suite's own
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trbench.config.sections import _Strict

ScenarioName = Literal["router", "orchestrator", "chat"]
SCENARIO_NAMES: tuple[str, ...] = ("router", "orchestrator", "chat")
# the QA prompt carries top-k documents: about 650 tokens on the bundled models' tokenizers
QA_MIN_CTX = 1024


class SuitesSpec(_Strict):
    """Quality suites on the same servers as the speed matrix (datasets/scenarios/, datasets/qa/): per-scenario
    JSON parse, schema and route rates, the QA results matrix (docs/scenarios.md, docs/qa-scoring.md)."""

    scenarios: list[ScenarioName] = Field(default_factory=list, description="scenario suites to run, by name")
    qa: bool = Field(default=False, description="run the QA suite with its context documents")
    scenario_dir: str = Field(default="datasets/scenarios", description="folder of <name>.yaml scenario suites")
    qa_suite: str = Field(default="datasets/qa/qa.yaml", description="the QA suite file")
    models: list[str] | None = Field(default=None, description="models the suites run on (default: all of models)")
    runs: int = Field(default=1, ge=1, le=100, description="runs per suite and model")
    messages: int = Field(default=6, ge=1, le=10_000, description="requests per scenario and run")
    questions: int = Field(default=6, ge=1, le=10_000, description="QA questions per run")
    max_tokens: int | None = Field(default=None, ge=8, le=4096, description="null: each suite's own")
    json_mode: bool | None = Field(default=None, description="ask the server for JSON; null: as each suite says")
    top_k: int | None = Field(default=None, ge=1, le=20, description="QA documents per prompt; null: the suite's own")
    ensemble: bool = Field(default=False, description="also the QA majority vote of all the suites' models "
                           "(trbench ensemble), when two or more ran QA")
    temperature: float = Field(default=0.0, ge=0, le=2, description="0: the answers are repeatable")
    num_ctx: int | None = Field(default=None, ge=128, le=1_048_576,
                                description="context size for the suites (default: the grid's largest)")

    @property
    def names(self) -> list[str]:
        """Every selected suite, scenarios first, in a fixed order."""
        return [n for n in SCENARIO_NAMES if n in self.scenarios] + (["qa"] if self.qa else [])

    def scenario_path(self, name: str) -> str:
        return f"{self.scenario_dir.rstrip('/')}/{name}.yaml"
