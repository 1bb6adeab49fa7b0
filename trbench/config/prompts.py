"""Prompt suites (datasets/prompts/*.yaml): what the single-agent runs send."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from trbench.config.suite_files import content_digest, read_suite


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    user: str = Field(min_length=1)
    system: str | None = None


class PromptSuite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    system: str | None = None
    prompts: list[Prompt] = Field(min_length=1)
    digest: str = ""

    def messages(self, index: int, unique_prefix: str | None = None) -> tuple[str, list[dict[str, str]]]:
        """The prompt id and chat messages of request number `index` (cycling through the suite).

        A unique prefix at the very start defeats prompt caching: no two requests share a prefix.
        """
        p = self.prompts[index % len(self.prompts)]
        system = p.system if p.system is not None else self.system
        messages = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": p.user})
        if unique_prefix:
            messages[0] = {**messages[0], "content": f"[{unique_prefix}] {messages[0]['content']}"}
        return p.id, messages


class PromptSuiteError(ValueError):
    pass


def load_prompts(path: str | Path, base: Path | None = None) -> PromptSuite:
    p = Path(path)
    if not p.is_absolute() and base is not None and not p.exists():
        p = base / p
    if not p.is_file():
        raise PromptSuiteError(f"spec field 'prompts': file {path} not found; fix: point it at a suite in datasets/prompts/")
    suite, raw = read_suite(p, PromptSuite, PromptSuiteError, "prompts", "point it at a suite in datasets/prompts/",
                            "datasets/prompts/single_agent.yaml", detail_lines=3)
    return suite.model_copy(update={"digest": content_digest(raw)})
