"""trbench: the Prefect-free library under flows/ and tasks/, one folder per job (imports point down):

  config/    the TR matrix spec, its loading and checks, prompt and agent suites
  engines/   instance providers behind a registry (embedded llama.cpp, Ollama in Docker or as a
             process, external servers), GGUF facts, bundled models, child processes
  backends/  wire clients (OpenAI-compatible, Ollama) behind a registry
  run/       planning, one single-agent run, one multi-agent run, preflight, progress events
  measure/   metrics, telemetry probes and sampler, energy, VRAM estimate, the manifest
  data/      cell identity, row models and the Parquet schemas derived from them, the store,
             the atomic writer, the failure log
  report*, validation, outliers, plots, regression: report and quality (moving to report/ and
             quality/); cli.py and cli_prefect.py: the command line

Nothing is imported here: `import trbench.cli` stays fast.
"""
