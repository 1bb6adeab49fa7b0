"""Agents as data (datasets/agents/*.yaml): a persona and a chain of calls over a data digest."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from trbench.config.suite_files import content_digest, read_suite
from trbench.prose import noun

ROLES = ("collector", "insight")


class AgentCall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    prompt: str = Field(min_length=1, description="may use {digest} and {previous} (the last call's answer)")


class Agent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    persona: str
    calls: list[AgentCall] = Field(min_length=1)

    def messages(self, call: AgentCall, digest: str, previous: str, unique_prefix: str | None) -> list[dict[str, str]]:
        system = f"[{unique_prefix}] {self.persona}" if unique_prefix else self.persona
        user = call.prompt.replace("{digest}", digest).replace("{previous}", previous or "(no answer)")
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class AgentSuite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    digest: str = Field(description="file name of the data digest, next to the suite")
    agents: dict[str, Agent]
    digest_text: str = ""
    content_digest: str = ""

    def agent(self, role: str) -> Agent:
        return self.agents[role]


class AgentSuiteError(ValueError):
    pass


def load_agents(path: Path) -> AgentSuite:
    suite, raw = read_suite(path, AgentSuite, AgentSuiteError, "multi_agent.agents",
                            "point it at datasets/agents/tr_agents.yaml", "datasets/agents/tr_agents.yaml")
    missing = [r for r in ROLES if r not in suite.agents]
    if missing:
        raise AgentSuiteError(f"spec field 'multi_agent.agents': {path} lacks {noun('agent', len(missing))} {missing}; fix: define {list(ROLES)}")
    digest_file = path.parent / suite.digest
    if not digest_file.is_file():
        raise AgentSuiteError(f"agent suite {path}: digest file {digest_file} not found; fix: ship it beside the suite")
    text = digest_file.read_text()
    return suite.model_copy(update={"digest_text": text, "content_digest": content_digest(raw, text.encode())})
