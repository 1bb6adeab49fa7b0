"""trbench's figures under the names and formulas of the peers a reader compares them with: guidellm,
vLLM's `vllm bench serve`, NVIDIA aiperf and llama.cpp's llama-bench. The report prints NAMES in its
appendix and docs/metric-names.md is written from it (`python -m trbench.report.metric_names`; a test
fails when the page drifts).

Each peer's formula is as its source states it: guidellm's request statistics (its
inter_token_latency_ms and time_per_output_token_ms), vllm/benchmarks/serve.py calculate_metrics,
aiperf's metric classes (metrics/types/*_metric.py) and llama-bench's README and test loop. Where one
name means different things in two tools the row says so: the same word is never the same figure by
assumption."""

from __future__ import annotations

from pydantic import BaseModel

from trbench.report.tables import Table, _cols

CONVENTION = ("trbench follows vLLM bench serve's conventions for TTFT, TPOT, ITL and e2e: TPOT = (e2e - TTFT) / "
              "(n - 1) per request, ITL = every gap between consecutive streamed chunks, pooled. Its server-view "
              "decode rate follows llama.cpp's own timings (n - 1 steps over the decode time), as llama-bench's tg "
              "rate does")

AMBIGUOUS = ("Three names differ between tools: guidellm's ITL is trbench's TPOT (both average one request's decode "
             "steps, guidellm from the first to the last token, trbench from the first token to the end of the "
             "response); guidellm's TPOT divides the whole request, its wait for the first token included, by n, so it "
             "has no trbench counterpart and reads far above trbench's TPOT; aiperf's ITL is trbench's TPOT and "
             "aiperf's inter chunk latency (ICL) is trbench's ITL. The report labels trbench's ITL 'ITL (chunk gap)' "
             "where it stands beside TPOT; stored column names are unchanged")


class MetricName(BaseModel):
    figure: str  # trbench's name as the report prints it
    trbench: str  # its formula (the exact text: metrics.DEFINITIONS under `key`)
    key: str  # the stored column or definition key
    guidellm: str
    vllm: str
    aiperf: str
    llama_bench: str


NAMES: list[MetricName] = [
    MetricName(
        figure="TTFT", key="ttft_ms",
        trbench="t(first chunk with generated text of any kind, reasoning included) - t(sent)",
        guidellm="time_to_first_token_ms: first token - request start",
        vllm="TTFT: first streamed chunk with text - request start",
        aiperf="Time to First Token (TTFT): first non-empty response - request start, reasoning included",
        llama_bench="none (no server, no stream)"),
    MetricName(
        figure="TTFAT", key="ttfat_ms",
        trbench="t(first chunk with answer text) - t(sent); TTFT where nothing is reasoned first",
        guidellm="time to first output token (TTFOT), in versions from 2026 on",
        vllm="none",
        aiperf="Time to First Output Token (TTFO): first non-reasoning token - request start",
        llama_bench="none"),
    MetricName(
        figure="TPOT", key="tpot_ms",
        trbench="(e2e - TTFT) / (output_tokens - 1), per request",
        guidellm="inter_token_latency_ms (called ITL): (last token - first token) / (output_tokens - 1)",
        vllm="TPOT: (latency - ttft) / (output_len - 1), per request",
        aiperf="Inter Token Latency (ITL): (request latency - TTFT) / (output sequence length - 1)",
        llama_bench="1000 / tg t/s is the mean decode step, without client or network"),
    MetricName(
        figure="ITL (chunk gap)", key="itl_ms",
        trbench="every gap between consecutive streamed chunks; p50/p95/max per request, pooled over requests "
        "in load steps",
        guidellm="none (its ITL is a per-request mean: trbench's TPOT)",
        vllm="ITL: every gap between consecutive chunks, pooled over requests (itls += output.itl)",
        aiperf="Inter Chunk Latency (ICL): every gap between consecutive content responses, pooled over requests",
        llama_bench="none"),
    MetricName(
        figure="(none)", key="",
        trbench="no counterpart; e2e / output_tokens is the nearest",
        guidellm="time_per_output_token_ms (called TPOT): (last token - request start) / output_tokens, the wait "
        "for the first token included",
        vllm="none",
        aiperf="none",
        llama_bench="none"),
    MetricName(
        figure="e2e", key="e2e_ms",
        trbench="t(last byte of the response) - t(sent)",
        guidellm="request_latency: request end - request start",
        vllm="E2EL: latency, request end - request start",
        aiperf="Request Latency: last content response - request start (usage-only chunks left out)",
        llama_bench="none"),
    MetricName(
        figure="decode tok/s (server view)", key="decode_tps",
        trbench="(server decode tokens - 1) / server decode time (llama.cpp timings, Ollama eval_*)",
        guidellm="none (client clock only)",
        vllm="none (client clock only)",
        aiperf="none (client clock only)",
        llama_bench="tg<n> t/s: n generated tokens / their time, one token per step, mean ± stddev over "
        "repetitions"),
    MetricName(
        figure="decode tok/s (client)", key="decode_tps_client",
        trbench="(streamed tokens - 1) / (t(last chunk) - t(first chunk)), per request",
        guidellm="per-request output tokens per second, from its ITL (older versions)",
        vllm="none per request (1000 / TPOT)",
        aiperf="Output Token Throughput Per User: 1 / ITL",
        llama_bench="tg<n> t/s (no client)"),
    MetricName(
        figure="prefill", key="prefill_ms",
        trbench="server-reported prompt time (llama.cpp timings.prompt_ms, Ollama prompt_eval_duration); "
        "prompt tokens / prefill is the prefill rate",
        guidellm="none (TTFT holds it)",
        vllm="none (TTFT holds it)",
        aiperf="Prefill Throughput Per User: input sequence length / TTFT",
        llama_bench="pp<n> t/s: n prompt tokens / their time, in batches, mean ± stddev over repetitions"),
    MetricName(
        figure="output tok/s (load step)", key="output_tps",
        trbench="output tokens of the step's ok measured requests / the step's wall time",
        guidellm="output_tokens_per_second: output tokens / benchmark duration",
        vllm="Output token throughput: total output tokens / benchmark duration",
        aiperf="Output Token Throughput: total output tokens / benchmark duration",
        llama_bench="none (one sequence at a time)"),
    MetricName(
        figure="req/s (load step)", key="request_rps",
        trbench="ok measured requests / the step's wall time",
        guidellm="requests_per_second",
        vllm="Request throughput: completed requests / benchmark duration",
        aiperf="Request Throughput: requests / benchmark duration",
        llama_bench="none"),
]

HEADERS = ("trbench figure", "trbench formula", "guidellm", "vLLM bench serve", "aiperf", "llama-bench")


def rows() -> list[list[str]]:
    return [[n.figure, n.trbench, n.guidellm, n.vllm, n.aiperf, n.llama_bench] for n in NAMES]


def names_table() -> Table:
    return Table(columns=_cols(*HEADERS), rows=rows(), keys=1)


# the load section's pointer to the appendix table, where TPOT and ITL stand side by side
LOAD_NOTE = ("TPOT is vLLM's TPOT and what guidellm and aiperf call ITL; ITL (chunk gap) is vLLM's ITL and aiperf's "
             "inter chunk latency (appendix: metric names across tools)")


def page() -> str:
    """docs/metric-names.md."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["# Metric names across tools", "",
             "<!-- generated by `python -m trbench.report.metric_names > docs/metric-names.md`; do not edit -->", "",
             "What each trbench figure is called, and how it is computed, by the tools a reader compares trbench "
             "with. Every report prints this table in its appendix; trbench's own exact formulas are in "
             "`trbench/measure/metrics.py` (each report's appendix prints them).", "",
             CONVENTION + ".", "", AMBIGUOUS + ".", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows()]
    lines += ["", "A rate a peer reports over a whole benchmark (output tok/s, req/s) is comparable only for the "
              "same concurrency, prompt and output lengths; llama-bench's pp and tg run one sequence with exact "
              "lengths and no server, so they bound what a server can reach rather than match it."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(page(), end="")
