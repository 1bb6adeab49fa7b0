"""trbench: the Prefect-free library under flows/ and tasks/, one folder per job, in layers, lowest
first: a package imports only the packages above it in this list (tests/test_layout.py, LAYERS).

  data/        cell identity, row models and the Parquet schemas derived from them, the store,
               the atomic writer, the failure log
  config/      the TR matrix spec, reading it, what its relative paths mean, prompt and agent suites
  backends/    wire clients (OpenAI-compatible, Ollama) behind a registry
  engines/     instance providers behind a registry (embedded llama.cpp, Ollama in Docker or as a
               process, external servers), GGUF facts, bundled models, child processes
  measure/     metrics, telemetry probes and sampler, energy, VRAM estimate, the manifest, outlier flags
  suites/      the quality suites of answers: QA scoring, scenario checks, ensembles, results matrix
  run/         the spec's checks against files and machine, planning, one single-agent run, one
               multi-agent run, load and embeddings steps, suite runs, preflight, progress events
  workloads/   the TR session and the workloads behind one protocol (plan, execute, tables, report
               section), registered once: single-agent matrix, quality suites, multi-agent runs, load
               steps, embeddings; their steps run plainly or, from flows/, as Prefect task runs
  report/      the report: models, build per section, tables, text, plots, render (templates/), publish,
               the regression comparison of two built reports
  validation/  GX validation of a TR's files after its run, the rendered report included
  cli_prefect.py, then cli.py: the command line

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
