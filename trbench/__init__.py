"""trbench: the Prefect-free library under flows/ and tasks/, one folder per job (imports point down):

  config/    the TR matrix spec, its loading and checks, prompt and agent suites
  engines/   instance providers behind a registry (embedded llama.cpp, Ollama in Docker or as a
             process, external servers), GGUF facts, bundled models, child processes
  backends/  wire clients (OpenAI-compatible, Ollama) behind a registry
  run/       planning, one single-agent run, one multi-agent run, preflight, progress events
  measure/   metrics, telemetry probes and sampler, energy, VRAM estimate, the manifest
  data/      cell identity, row models and the Parquet schemas derived from them, the store,
             the atomic writer, the failure log
  quality/   outlier flags, the regression comparison of two built reports, GX validation
  report/    the report: models, build per section, tables, text, plots, render (templates/), publish
  cli.py and cli_prefect.py: the command line

Each package names its API in __all__ and imports it lazily (lazy_exports): `import trbench.cli`
stays fast.
"""

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A package's public names, each imported from its module when first asked for (PEP 562), so
    that an __init__.py can name its API without importing every module below it."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{where[name]}"), name)

    return __getattr__
