"""Engines: the LLM servers a TR run measures, as instances (one server at one URL each).

Public API: Instance (what the flows see), InstanceError, create_instances (the provider registry:
embedded, external, ollama-docker, ollama-process), unanswered (is a failed server still there).
Providers, GGUF facts, bundled models, the models a server lists (served_models, for `trbench init`)
and process handling are modules of their own below.
"""

from trbench import lazy_exports

_WHERE = {"Instance": "instance", "InstanceError": "instance", "unanswered": "instance",
          "PROVIDERS": "registry", "create_instances": "registry"}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
