"""Instruction-tuned or base model, and so how it is prompted.

A base (pre-trained) model has no chat template: a server that applies its own fallback template
(llama.cpp uses ChatML) makes it echo the prompt and write template tokens as text. trbench drives
such a model as plain-text completion and says so in the report.
"""

from __future__ import annotations

from trbench.data.model_facts import ChatFacts, ModelFacts, PromptStyle

__all__ = ["PromptStyle", "kind_facts", "ollama_has_chat_template", "prompt_style"]
# Ollama's template for a model that has none of its own: the prompt as it is (docs/modelfile.md)
_OLLAMA_PLAIN_TEMPLATES = {"", "{{ .Prompt }}", "{{.Prompt}}"}


def kind_facts(has_chat_template: bool | None) -> ChatFacts:
    """The facts a report and the runner read: chat_template (present?), model_kind, prompt_style."""
    if has_chat_template is None:
        return ChatFacts(chat_template=None, model_kind="unknown", prompt_style="chat")
    return ChatFacts(chat_template=has_chat_template, model_kind="instruct" if has_chat_template else "base",
                     prompt_style="chat" if has_chat_template else "completion")


def ollama_has_chat_template(template: str | None) -> bool | None:
    """/api/show's template: a chat model's formats .Messages or .System; a base model's is the prompt."""
    if template is None:
        return None
    return template.strip() not in _OLLAMA_PLAIN_TEMPLATES


def prompt_style(facts: ModelFacts | None) -> PromptStyle:
    return "completion" if facts is not None and facts.prompt_style == "completion" else "chat"
