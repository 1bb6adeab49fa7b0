"""A FAKE `ollama` command line for tests. It is not Ollama and runs no model.

tests/fakes/bin/ollama runs this file with $FAKE_OLLAMA_PYTHON (the test's interpreter), so a test
that puts tests/fakes/bin first on PATH has an `ollama` that behaves as ollama's CLI documents:

    ollama serve                  serve the FAKE Ollama HTTP API (tests/fakes/fake_ollama.py) on
                                  OLLAMA_HOST (host:port, default 127.0.0.1:11434) until SIGTERM/SIGINT
    ollama list | ls              GET  /api/tags     of the server at OLLAMA_HOST
    ollama show MODEL [--modelfile|--parameters|--template]
                                  POST /api/show
    ollama pull MODEL             POST /api/pull (streamed progress; the fake "downloads" any name
                                  but those with "does-not-exist", or only FAKE_OLLAMA_REGISTRY's)
    ollama ps                     GET  /api/ps
    ollama --version | -v         GET  /api/version

What the fake `serve` does beyond Ollama, for tests (all through the environment it inherits):

    FAKE_OLLAMA_RECORD_DIR=DIR    write DIR/serve-<port>.json at start: pid, pgid, argv, the
                                  environment it saw (OLLAMA_HOST, CUDA_VISIBLE_DEVICES, ...), runner_pid
    FAKE_OLLAMA_MODELS=a:1b,b:2b  the models it has (default: fake_ollama.default_models())
    FAKE_OLLAMA_REGISTRY=a,b:2b   the only models `pull` finds (default: any name without "does-not-exist")
    FAKE_OLLAMA_PULL_STEP_S=0.1   seconds between a pull's progress lines
    FAKE_OLLAMA_RUNNER=1          start a child process in its process group, as Ollama starts
                                  `ollama runner` processes (stopped on a clean shutdown)
    FAKE_OLLAMA_NEVER_HEALTHY=1   never listen: a server that does not become healthy
    FAKE_OLLAMA_IGNORE_SIGTERM=1  ignore SIGTERM (only SIGKILL or SIGINT stop it)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path

if __package__ in (None, ""):  # run as a file by tests/fakes/bin/ollama
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fakes.fake_ollama import (  # noqa: E402
    FAKE_VERSION, FakeModel, FakeOllama, _Handler, concurrency_from_env, default_models, display_name)

DEFAULT_PORT = 11434
RECORDED_ENV = ("OLLAMA_HOST", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OLLAMA_MODELS", "OLLAMA_KEEP_ALIVE",
                "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE", "OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "PATH")
_RUNNER_CODE = "import time\nwhile True: time.sleep(1)"


def parse_host(value: str | None) -> tuple[str, int]:
    """OLLAMA_HOST as Ollama reads it: [scheme://]host[:port], default 127.0.0.1:11434."""
    value = (value or "").strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.rstrip("/")
    if not value:
        return "127.0.0.1", DEFAULT_PORT
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value.strip("[]"), DEFAULT_PORT
    return host.strip("[]"), int(port)


def _log(msg: str, level: str = "INFO") -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    print(f'time={stamp} level={level} source=fake_ollama_cli.py msg="{msg}"', file=sys.stderr, flush=True)


# --- serve -----------------------------------------------------------------------------------


def _registry(name: str) -> FakeModel | None:
    """What the fake `ollama pull` finds in "the registry": the names FAKE_OLLAMA_REGISTRY lists, or
    any name without "does-not-exist" in it."""
    listed = [n.strip() for n in os.environ.get("FAKE_OLLAMA_REGISTRY", "").split(",") if n.strip()]
    if listed:
        return FakeModel() if display_name(name) in {display_name(n) for n in listed} else None
    return None if "does-not-exist" in name else FakeModel()


class ServingFake(FakeOllama):
    """FakeOllama bound to a given port (OLLAMA_HOST)."""

    def __init__(self, host: str, port: int, models: dict[str, FakeModel]) -> None:
        super().__init__(models, host=host, registry=_registry,
                         pull_step_s=float(os.environ.get("FAKE_OLLAMA_PULL_STEP_S", "0")),
                         **concurrency_from_env(os.environ))
        self.bind_port = port

    def start(self) -> ServingFake:
        handler = type("FakeOllamaServeHandler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer((self.host, self.bind_port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-ollama", daemon=True)
        self._thread.start()
        return self


def _models_from_env() -> dict[str, FakeModel]:
    names = [n.strip() for n in os.environ.get("FAKE_OLLAMA_MODELS", "").split(",") if n.strip()]
    return {n: FakeModel() for n in names} if names else default_models()


def _record(port: int, runner: subprocess.Popen | None) -> None:
    record_dir = os.environ.get("FAKE_OLLAMA_RECORD_DIR")
    if not record_dir:
        return
    data = {"pid": os.getpid(), "pgid": os.getpgid(0), "ppid": os.getppid(), "argv": sys.argv,
            "env": {k: os.environ.get(k) for k in RECORDED_ENV}, "runner_pid": runner.pid if runner else None}
    path = Path(record_dir) / f"serve-{port}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def serve() -> int:
    host, port = parse_host(os.environ.get("OLLAMA_HOST"))
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    if os.environ.get("FAKE_OLLAMA_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    runner = None
    if os.environ.get("FAKE_OLLAMA_RUNNER") == "1":
        runner = subprocess.Popen([sys.executable, "-c", _RUNNER_CODE, "fake-ollama-runner"],
                                  stdin=subprocess.DEVNULL)
    _record(port, runner)
    server = None
    try:
        if os.environ.get("FAKE_OLLAMA_NEVER_HEALTHY") == "1":
            _log("FAKE: never healthy: not listening", level="WARN")
        else:
            server = ServingFake(host, port, _models_from_env())
            try:
                server.start()
            except OSError as err:
                print(f"Error: listen tcp {host}:{port}: bind: {err.strerror or err}", file=sys.stderr, flush=True)
                return 1
            _log(f"Listening on {host}:{port} (version {FAKE_VERSION}, FAKE)")
            _log(f"FAKE: CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}")
        while not stopping.wait(0.2):
            pass
        _log("FAKE: shutting down")
    finally:
        if server is not None:
            server.stop()
        if runner is not None:
            runner.terminate()
            runner.wait()
    return 0


# --- client commands --------------------------------------------------------------------------


class _NoServer(Exception):
    pass


def _base_url() -> str:
    host, port = parse_host(os.environ.get("OLLAMA_HOST"))
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(method: str, path: str, body: dict | None = None, timeout: float = 30.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{_base_url()}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        return _OPENER.open(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error") or str(err)
        except ValueError:
            message = str(err)
        raise RuntimeError(message) from None
    except (urllib.error.URLError, ConnectionError) as err:
        raise _NoServer(str(err)) from None


def _json(method: str, path: str, body: dict | None = None) -> dict:
    with _call(method, path, body) as r:
        return json.loads(r.read())


def human_bytes(n: int) -> str:
    """Ollama's format.HumanBytes: decimal units."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} B"


def human_ago(rfc3339: str) -> str:
    try:
        then = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    except ValueError:
        return rfc3339
    secs = max(0, (datetime.now(timezone.utc) - then).total_seconds())
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if secs >= size:
            k = int(secs // size)
            return f"{k} {unit}{'s' if k > 1 else ''} ago"
    return "Less than a second ago" if secs < 1 else f"{int(secs)} seconds ago"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("    ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_version() -> int:
    try:
        version = _json("GET", "/api/version").get("version", "")
    except _NoServer:
        print("Warning: could not connect to a running Ollama instance")
        print(f"Warning: client version is {FAKE_VERSION}")
        return 0
    print(f"ollama version is {version}")
    if version != FAKE_VERSION:
        print(f"Warning: client version is {FAKE_VERSION}")
    return 0


def cmd_list() -> int:
    models = _json("GET", "/api/tags").get("models", [])
    rows = [["NAME", "ID", "SIZE", "MODIFIED"]]
    rows += [[m["name"], m.get("digest", "")[:12], human_bytes(m.get("size", 0)), human_ago(m.get("modified_at", ""))]
             for m in models]
    print(_table(rows))
    return 0


def cmd_ps() -> int:
    models = _json("GET", "/api/ps").get("models", [])
    rows = [["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]]
    for m in models:
        vram = m.get("size_vram", 0)
        processor = "100% GPU" if vram and vram >= m.get("size", 0) else ("100% CPU" if not vram else "CPU/GPU")
        rows.append([m["name"], m.get("digest", "")[:12], human_bytes(m.get("size", 0)), processor,
                     str(m.get("context_length", "")), m.get("expires_at", "")])
    print(_table(rows))
    return 0


def cmd_show(model: str, flags: set[str]) -> int:
    info = _json("POST", "/api/show", {"model": model})
    if "--modelfile" in flags:
        print(info.get("modelfile", ""))
    elif "--parameters" in flags:
        print(info.get("parameters", ""))
    elif "--template" in flags:
        print(info.get("template", ""))
    else:
        details = info.get("details") or {}
        model_info = info.get("model_info") or {}
        arch = model_info.get("general.architecture", details.get("family", ""))
        print("  Model")
        for key, value in (("architecture", arch), ("parameters", details.get("parameter_size", "")),
                           ("context length", model_info.get(f"{arch}.context_length", "")),
                           ("embedding length", model_info.get(f"{arch}.embedding_length", "")),
                           ("quantization", details.get("quantization_level", ""))):
            print(f"    {key:<20}{value}")
        print("\n  Capabilities")
        for cap in info.get("capabilities") or []:
            print(f"    {cap}")
    return 0


def cmd_pull(model: str) -> int:
    with _call("POST", "/api/pull", {"model": model, "stream": True}, timeout=3600) as r:
        for raw in r:
            if not raw.strip():
                continue
            line = json.loads(raw)
            if "error" in line:
                raise RuntimeError(line["error"])
            if line.get("total"):
                pct = int(100 * int(line.get("completed") or 0) / int(line["total"]))
                print(f"{line['status']}: {pct}% {human_bytes(line['total'])}")
            else:
                print(line.get("status", ""))
    return 0


USAGE = """Large language model runner (FAKE, for tests)

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  show        Show information for a model
  pull        Pull a model from a registry
  list        List models
  ps          List running models

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = args[0], args[1:]
    positional = [a for a in rest if not a.startswith("-")]
    flags = {a for a in rest if a.startswith("-")}
    try:
        if cmd in ("-v", "--version"):
            return cmd_version()
        if cmd in ("serve", "start"):
            return serve()
        if cmd in ("list", "ls"):
            return cmd_list()
        if cmd == "ps":
            return cmd_ps()
        if cmd in ("show", "pull"):
            if len(positional) != 1:
                print(f'Error: accepts 1 arg(s), received {len(positional)}', file=sys.stderr)
                return 1
            return cmd_show(positional[0], flags) if cmd == "show" else cmd_pull(positional[0])
        print(f'Error: unknown command "{cmd}" for "ollama"', file=sys.stderr)
        return 1
    except _NoServer:
        print("Error: could not connect to ollama server, run 'ollama serve' to start it", file=sys.stderr)
        return 1
    except RuntimeError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
