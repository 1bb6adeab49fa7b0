"""The CLI's side of Prefect: the temporary server it owns, the watch that stops a flow run the
CLI runs in-process when it is cancelled in the UI, and the run's log file.

The temporary server: `trbench run` without PREFECT_API_URL needs one. Prefect would start it
itself (SubprocessASGIServer) as a child in the CLI's process group. A Ctrl-C in the terminal goes
to the whole group, so the server died at once, and the flow process then spent minutes retrying
every queued event and log against it (about 7 s per event) and printed each one. Started here in
its own session, the server outlives the interrupt: the flow reports its final state, the event
and log workers are drained while the server still answers, and only then is the server stopped.
A reaper process stops it if the CLI itself is killed (kill -9), as the llama.cpp servers watch
their parent.

Only the CLI imports this (it imports Prefect); the rest of trbench/ stays Prefect-free.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from uuid import UUID

from trbench.engines import processes, reaper

DRAIN_TIMEOUT_S = 5.0  # events and logs to a live local server take well under a second

# trbench sends nothing anywhere but the servers under test. Prefect's telemetry has two parts:
# the server's heartbeat (PREFECT_SERVER_ANALYTICS_ENABLED) and the SDK's own events with their
# first-run "anonymous usage" notice, decided at `import prefect` (DO_NOT_TRACK). Great
# Expectations has its own. Set in the CLI's environment before Prefect is imported, they reach
# every process it starts: the temporary server, workers' flow runs, the servers under test.
NO_TELEMETRY = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "false"}


def log_path(root: Path) -> Path:
    """The run's log file: everything Prefect logged for the TR run, tracebacks included."""
    return root / "logs" / "run.log"


def server_log_path(root: Path) -> Path:
    """The temporary Prefect server's own log, for a run without --verbose."""
    return root / "logs" / "prefect-server.log"


def api_configured(cwd: Path | None = None) -> bool:
    """Whether a Prefect API is configured, read from where Prefect reads it without importing
    Prefect (seconds): PREFECT_API_URL in the environment, in a .env or prefect.toml in the working
    directory, or in the active profile of $PREFECT_HOME/profiles.toml (PREFECT_PROFILE picks it)."""
    import tomllib

    if os.environ.get("PREFECT_API_URL"):
        return True
    here = cwd or Path.cwd()
    env_file = here / ".env"
    if env_file.is_file() and any(line.strip().startswith("PREFECT_API_URL=") and line.split("=", 1)[1].strip()
                                  for line in env_file.read_text(errors="replace").splitlines()):
        return True
    try:
        if (here / "prefect.toml").is_file() and tomllib.loads((here / "prefect.toml").read_text()).get(
                "api", {}).get("url"):
            return True
        home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
        profiles = tomllib.loads((home / "profiles.toml").read_text()) if (home / "profiles.toml").is_file() else {}
    except (OSError, tomllib.TOMLDecodeError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    return bool(active and profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL"))


def needed() -> bool:
    """A temporary server is what Prefect would start: no API URL, ephemeral mode allowed."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and settings.server.ephemeral.enabled


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _ServerProcess:
    """Prefect's temporary server, the command and settings Prefect's own (SubprocessASGIServer)
    uses, in a session of its own, its output appended to `output` when set (else the CLI's
    terminal). Started without importing Prefect's server package, which takes seconds the server
    process spends anyway: the CLI goes on with its own work while the server boots."""

    def __init__(self, output: Path | None) -> None:
        self.output = output
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = None

    def spawn(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
               "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "error", "--lifespan", "on"]
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
               **get_current_settings().to_environment_variables(exclude_unset=True)}
        logging.getLogger("prefect").info("Starting temporary server on http://127.0.0.1:%d", self.port)
        if self.output is None:
            self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
            return
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float) -> None:
        """Until /health answers 200; one line naming the server's log when it exits or times out."""
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the temporary Prefect server exited ({self.process.returncode}) while "
                                       f"starting; its log: {self.output or 'the terminal above'}")
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout_s:.0f} s; fix: raise "
                           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or set PREFECT_API_URL to a running "
                           f"server; its log: {self.output or 'the terminal above'}")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            processes.terminate(proc, 5)


def drain_workers(timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
    """Send what Prefect's event and log workers still hold, within timeout_s each; False if
    something was left (its server gone after all): then Prefect's own drain at interpreter exit
    would retry it for minutes, and the caller ends the process without it."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    left = 0
    for worker in (APILogWorker, EventsWorker):
        try:
            drained = worker.drain_all(timeout=timeout_s)  # (done, not done); a coroutine only in an event loop
            left += len(drained[1]) if isinstance(drained, tuple) else 0
        except Exception:  # noqa: BLE001 - a worker that never started has nothing to send
            pass
    return left == 0


class TemporaryServer:
    """Start the temporary server (when Prefect would) and point Prefect at it; on every way out,
    drain the event and log workers, then stop it. `api_url` is None when none was needed;
    `drained` says whether everything Prefect queued was delivered. With `output`, the server's
    own log (its errors while it stops included) goes there, not to the terminal."""

    def __init__(self, output: Path | None = None) -> None:
        self.output = output
        self.api_url: str | None = None
        self.drained = True
        self._stack = contextlib.ExitStack()
        self._server: _ServerProcess | None = None
        self._guard: subprocess.Popen | None = None
        self._entered = False

    def spawn(self) -> bool:
        """Start the server's process (when Prefect would need one) without waiting for it, so that
        the CLI's own start-up overlaps the server's; True when one was started. Idempotent."""
        if self._server is not None or not needed():
            return self._server is not None
        server = _ServerProcess(self.output)
        server.spawn()
        self._server = server
        assert server.process is not None
        self._guard = reaper.spawn(pgids=[server.process.pid])  # stops it if the CLI is killed (kill -9)
        return True

    def discard(self) -> None:
        """Stop a server spawned but never entered (the CLI stopped before its flow ran)."""
        if self._server is not None and not self._entered:
            self._server.stop()
            if self._guard is not None:
                processes.terminate(self._guard, 5)

    def __enter__(self) -> TemporaryServer:
        self._entered = True
        if not self.spawn():
            return self
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
        from prefect.settings import temporary_settings

        from prefect.server.api.server import SubprocessASGIServer  # imported while the server boots

        server, guard = self._server, self._guard
        assert server is not None and guard is not None
        self._stack.callback(lambda: processes.terminate(guard, 5))  # once the server is gone
        self._stack.callback(server.stop)
        # Prefect code that asks for the ephemeral server (a worker thread without this context's
        # settings) gets this one, as under prefect_test_harness, instead of starting a second
        stand_in = SubprocessASGIServer(port=None)
        stand_in.port, stand_in.running, stand_in.server_process = server.port, True, None
        self._stack.callback(SubprocessASGIServer._instances.pop, None, None)
        try:
            server.wait_ready(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
            self._stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
        except BaseException:
            self._stack.close()
            raise
        self._stack.callback(self._drain)  # runs first: while the server still answers
        self.api_url = server.api_url
        return self

    def _drain(self) -> None:
        self.drained = drain_workers()

    def __exit__(self, *exc) -> None:
        self._stack.close()


class CancelWatch:
    """A flow run deployed to a worker is stopped by the worker when it is cancelled in the UI; one
    the CLI runs in-process has nobody to stop it, and would stay Cancelling until the matrix
    ended. This watches its state from the moment it runs (`hook`, an on_running flow hook) and
    on Cancelling stops it as Ctrl-C does (SIGINT to this process: servers stopped, finished runs
    kept), then records it Cancelled (the interrupt had made it Crashed)."""

    POLL_S = 1.0

    def __init__(self) -> None:
        self.flow_run_id: UUID | None = None
        self.cancelled = False
        self._done = threading.Event()

    def hook(self, _flow, flow_run, _state) -> None:
        if self.flow_run_id is not None:
            return
        self.flow_run_id = flow_run.id
        context = contextvars.copy_context()  # the API URL of the flow's settings, also the temporary one
        threading.Thread(target=context.run, args=(self._watch, flow_run.id), name="trbench-cancel-watch",
                         daemon=True).start()

    def _watch(self, flow_run_id: UUID) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            while not self._done.wait(self.POLL_S):
                try:
                    state = client.read_flow_run(flow_run_id).state
                except Exception:  # noqa: BLE001 - a missed poll is retried; the flow goes on meanwhile
                    continue
                if state is not None and state.is_cancelling():
                    self.cancelled = True
                    os.kill(os.getpid(), signal.SIGINT)
                    return

    def __enter__(self) -> CancelWatch:
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if not self.cancelled or self.flow_run_id is None:  # cancelled: only once the flow ran (flow_run_id set)
            return
        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        with contextlib.suppress(Exception), get_client(sync_client=True) as client:
            client.set_flow_run_state(self.flow_run_id, Cancelled(message="Flow run was cancelled: servers stopped, "
                                                                          "finished runs kept"), force=True)


class TerminalOnlyWarnings(logging.Filter):
    """The terminal, without --verbose, shows Prefect's warnings and nothing else of its log: an
    error is said once, by the CLI's last line (what failed first and the fix), not also as the
    task's and the flow's error records with their tracebacks; those are in the run's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return False
        record.exc_info, record.exc_text = None, None
        return True


class RunLog:
    """While a flow runs: every record Prefect logs (INFO and up, tracebacks included) appended to
    the run's log file, and, without verbose, the terminal's handlers filtered to warnings."""

    FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"

    def __init__(self, root: Path, verbose: bool, plain: bool = False) -> None:
        self.path = log_path(root)
        self.verbose = verbose
        self.plain = plain  # a run without Prefect: trbench's own records, formatted plainly
        self._file: logging.Handler | None = None
        self._terminal: logging.Handler | None = None
        self._filtered: list[logging.Handler] = []
        self._filter = TerminalOnlyWarnings()

    def __enter__(self) -> RunLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = logging.FileHandler(self.path, encoding="utf-8")
        self._file.setLevel(logging.INFO)
        if self.plain:
            self._file.setFormatter(logging.Formatter(self.FORMAT))
            return self._enter_plain()
        from prefect.logging.formatters import PrefectFormatter

        self._file.setFormatter(PrefectFormatter(
            self.FORMAT, flow_run_fmt=self.FORMAT.replace("%(name)s", "Flow run %(flow_run_name)r"),
            task_run_fmt=self.FORMAT.replace("%(name)s", "Task run %(task_run_name)r")))
        root_logger = logging.getLogger()
        if not self.verbose:  # the handlers there now are the terminal's; Prefect's API handlers sit lower
            self._filtered = list(root_logger.handlers)
            for handler in self._filtered:
                handler.addFilter(self._filter)
        # first among the root's handlers: the terminal's filter takes a warning's traceback off
        # the record, and the file must have written it by then
        root_logger.handlers.insert(0, self._file)
        return self

    def _enter_plain(self) -> RunLog:
        """trbench's records to the file; on the terminal its warnings only (every record with
        --verbose), without tracebacks: an error is said once, by the CLI's last line."""
        assert self._file is not None
        trbench_logger = logging.getLogger("trbench")
        self._terminal = logging.StreamHandler(sys.stderr)
        self._terminal.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if not self.verbose else self.FORMAT))
        if not self.verbose:
            self._terminal.addFilter(self._filter)
        trbench_logger.setLevel(logging.INFO)
        trbench_logger.propagate = False
        trbench_logger.addHandler(self._file)
        trbench_logger.addHandler(self._terminal)
        return self

    def __exit__(self, *exc) -> None:
        if self.plain:
            trbench_logger = logging.getLogger("trbench")
            for handler in (self._file, self._terminal):
                if handler is not None:
                    trbench_logger.removeHandler(handler)
            if self._file is not None:
                self._file.close()
            trbench_logger.propagate = True
            self._upload()
            return
        root_logger = logging.getLogger()
        if self._file is not None:
            root_logger.removeHandler(self._file)
            self._file.close()
        for handler in self._filtered:
            handler.removeFilter(self._filter)
        self._upload()

    def _upload(self) -> None:
        """The closed log, whole, to an object-storage output_dir (a no-op for a local one); a log that does not
        go up loses no measurement, and says so."""
        from trbench.data import remote

        try:
            remote.push(self.path)
        except Exception as err:  # noqa: BLE001
            print(f"warning: the run's log was not uploaded: {type(err).__name__}: {err}", file=sys.stderr)
