"""External runners (docs/runner-contract.md): another program sends the requests and records what it
received; trbench reads its records with the same code as its own clients' streams.

A runner is a command that reads jobs (JSON, one per line) on stdin and writes one JSON line per
request on stdout, then {"job_end": id}. The job carries the exact path and body trbench's own
client builds (OpenAIClient/OllamaClient.path and .body), so both harnesses send identical
requests; each record carries the stream's lines as received, with their arrival offsets on
CLOCK_MONOTONIC (the clock of time.perf_counter_ns on Linux). trbench.backends.replay turns them
into the RawExchange its own client would have built, and every metric follows from that.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from trbench.backends import BACKENDS, replay
from trbench.backends.auth import runner_environment
from trbench.backends.base import ChatRequest, ErrorKind, RawExchange, classify_http_error, error_text

REPO_ROOT = Path(__file__).resolve().parents[2]
# harness name -> (env variable that overrides the binary, its default place after `make setup`)
RUNNERS: dict[str, tuple[str, Path]] = {
    "rust": ("TRBENCH_RUST_RUNNER", REPO_ROOT / "runners" / "rust" / "target" / "release" / "trbench-runner"),
}
# what a multi-agent call's body carries where the previous answer goes; the runner substitutes it
PREVIOUS_PLACEHOLDER = "\u0000trbench:previous\u0000"


class RunnerMissing(RuntimeError):
    pass


def runner_path(harness: str) -> Path:
    """Where the harness's runner binary is: $TRBENCH_<NAME>_RUNNER, else the build output of `make setup`."""
    env, default = RUNNERS[harness]
    return Path(os.environ.get(env) or default)


def missing_runner(harness: str) -> str | None:
    """Why the harness's runner cannot run (with the fix), or None when it can."""
    if harness not in RUNNERS:
        return None
    path = runner_path(harness)
    if path.is_file() and os.access(path, os.X_OK):
        return None
    env, _ = RUNNERS[harness]
    return (f"the {harness} runner {path} is not built; fix: `make setup` with cargo installed "
            f"(apt-get install cargo librust-tokio-dev librust-reqwest-dev librust-serde-json-dev librust-libc-dev), "
            f"or set {env} to a built runner")


class RunnerRecord(BaseModel):
    """One line a runner wrote: the raw observations of one request."""

    id: int | str | None = None
    agent: str | None = None
    url: str
    sent_at_unix: float
    t_send_ns: int = Field(description="CLOCK_MONOTONIC ns when the request was sent")
    end_offset_ns: int
    http_status: int | None = None
    lines: list[tuple[int, str]] = Field(default_factory=list, description="(arrival offset ns, line) as received")
    error_kind: ErrorKind | None = None
    error_message: str | None = None
    error_body: str | None = None
    cpu_ns: int | None = Field(default=None, description="the runner process's CPU time over the request")


def job_request(backend: str, req: ChatRequest, request_id: int | str) -> dict:
    """One request of a job: the exact path and body trbench's own client sends, and the request it came from."""
    client = BACKENDS[backend]
    return {"id": request_id, "path": client.path(req), "body": client.body(req),
            "request": req.model_dump(include={"model", "messages", "prompt", "max_tokens", "cache_prompt"})}


def to_exchange(backend: str, model: str, rec: RunnerRecord) -> RawExchange:
    """The RawExchange trbench's own client would have built from the same stream."""
    ex = RawExchange(backend=backend, url=rec.url, model=model, sent_at_unix=rec.sent_at_unix, t_send_ns=rec.t_send_ns,
                     t_end_ns=rec.t_send_ns + rec.end_offset_ns, http_status=rec.http_status,
                     client_cpu_ns=rec.cpu_ns)
    if rec.error_kind is not None:
        ex.status, ex.error_kind, ex.error_message = "error", rec.error_kind, rec.error_message
        if rec.error_body is not None and rec.http_status and rec.http_status >= 400:
            # the body's message decides (an OOM is an HTTP 500 with Ollama's words): trbench's own classifier
            message = error_text(rec.error_body)
            ex.error_kind = classify_http_error(rec.http_status, message)
            ex.error_message = f"HTTP {rec.http_status}: {message}"
    # a line that ends the stream (an error object, not JSON) came before any transport error: it overrides it
    return replay(ex, [(rec.t_send_ns + offset, line) for offset, line in rec.lines])


class ExternalRunner:
    """One runner process, kept for many jobs (its HTTP connections pooled, as the Python client's are)."""

    def __init__(self, command: list[str], api_key_env: str | None = None) -> None:
        self.command = command
        self.api_key_env = api_key_env  # the variable holding the server's key: passed in the runner's environment
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _started(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            # same process group: Ctrl-C in a terminal stops the runner with trbench. The server's key goes
            # in the runner's environment (never its argv or a job, which `ps` and error lines show)
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, bufsize=1,
                                          env=runner_environment(self.api_key_env))
        return self._proc

    def run_job(self, job: dict) -> Iterator[RunnerRecord]:
        """Send one job; yield each request's record as the runner writes it."""
        with self._lock:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.flush()
            except BrokenPipeError:
                raise self._died(proc) from None
            for line in proc.stdout:
                data = json.loads(line)
                if "job_end" in data:
                    return
                yield RunnerRecord.model_validate(data)
            raise self._died(proc)

    def _died(self, proc: subprocess.Popen[str]) -> RuntimeError:
        proc.wait()
        err = proc.stderr.read().strip() if proc.stderr else ""
        return RuntimeError(f"runner {self.command[0]} ended (exit {proc.returncode}) before the job did: {err}")

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()  # end of jobs: the runner exits
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            for stream in (self._proc.stdout, self._proc.stderr):
                if stream:
                    stream.close()
            self._proc = None


def job(backend: str, base_url: str, model: str, timeout_s: float, stall_timeout_s: float | None,
        requests: list[dict] | None = None, agents: list[dict] | None = None, agents_mode: str = "concurrent") -> dict:
    out: dict = {"backend": backend, "url": base_url, "model": model,
                 "options": {"timeout_s": timeout_s, "stall_timeout_s": stall_timeout_s}, "requests": requests or []}
    if agents is not None:
        out.update(agents=agents, agents_mode=agents_mode, previous_placeholder=PREVIOUS_PLACEHOLDER)
    return out


class ExternalRunnerClient:
    """A WireClient whose requests an external runner sends: trbench.run.single uses it unchanged."""

    def __init__(self, harness: str, backend: str, base_url: str, timeout_s: float = 300.0,
                 stall_timeout_s: float | None = 60.0, api_key_env: str | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(repr(b) for b in BACKENDS)}")
        if (why := missing_runner(harness)) is not None:
            raise RunnerMissing(why)
        self.backend, self.base_url = backend, base_url.rstrip("/")
        self.timeout_s, self.stall_timeout_s = timeout_s, stall_timeout_s
        self.runner = ExternalRunner([str(runner_path(harness))], api_key_env)
        self._n = 0

    def chat(self, req: ChatRequest) -> RawExchange:
        self._n += 1
        one = job(self.backend, self.base_url, req.model, self.timeout_s, self.stall_timeout_s,
                  requests=[job_request(self.backend, req, self._n)])
        records = list(self.runner.run_job(one))
        if len(records) != 1:
            raise RuntimeError(f"runner answered {len(records)} records to one request")
        return to_exchange(self.backend, req.model, records[0])

    def close(self) -> None:
        self.runner.close()
