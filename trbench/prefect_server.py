"""The temporary Prefect server of `trbench run` without PREFECT_API_URL, owned by the CLI.

Prefect would start it itself (SubprocessASGIServer) as a child in the CLI's process group. A
Ctrl-C in the terminal goes to the whole group, so the server died with the flow's first
breath of cleanup, and the flow process then spent minutes retrying every queued event and log
against it (about 7 s per event) and printed each one. Started here in its own session, the
server outlives the interrupt: the flow reports its final state, the event and log workers are
drained while the server still answers, and only then is the server stopped. A reaper process
stops it if the CLI itself is killed (kill -9), as the llama.cpp servers watch their parent.

Only the CLI imports this (it imports Prefect); the rest of trbench/ stays Prefect-free.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from trbench.engines import processes, reaper

DRAIN_TIMEOUT_S = 5.0  # events and logs to a live local server take well under a second


def needed() -> bool:
    """A temporary server is what Prefect would start: no API URL, ephemeral mode allowed."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and settings.server.ephemeral.enabled


def _server_class():
    from prefect.server.api.server import SubprocessASGIServer

    class OwnSessionServer(SubprocessASGIServer):
        """Prefect's temporary server, the same command and settings, in a session of its own."""

        def _run_uvicorn_command(self) -> subprocess.Popen:
            import prefect
            from prefect.settings import get_current_settings

            cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "error", "--lifespan", "on"]
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1",
                   **get_current_settings().to_environment_variables(exclude_unset=True)}
            return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)

        def stop(self) -> None:
            proc, self.server_process = self.server_process, None
            if proc is not None:
                processes.terminate(proc, 5)
            self.running = False

    return OwnSessionServer


def drain_workers(timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
    """Send what Prefect's event and log workers still hold, within timeout_s each; False if
    something was left (its server gone after all): then Prefect's own drain at interpreter exit
    would retry it for minutes, and the caller ends the process without it."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    left = 0
    for worker in (APILogWorker, EventsWorker):
        try:
            left += len(worker.drain_all(timeout=timeout_s)[1])
        except Exception:  # noqa: BLE001 - a worker that never started has nothing to send
            pass
    return left == 0


class TemporaryServer:
    """Start the temporary server (when Prefect would) and point Prefect at it; on every way out,
    drain the event and log workers, then stop it. `api_url` is None when none was needed;
    `drained` says whether everything Prefect queued was delivered."""

    def __init__(self) -> None:
        self.api_url: str | None = None
        self.drained = True
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> TemporaryServer:
        if not needed():
            return self
        from prefect.server.api.server import SubprocessASGIServer
        from prefect.settings import PREFECT_API_URL, temporary_settings

        server = _server_class()(port=None)
        # Prefect code that asks for the ephemeral server gets this one, as under prefect_test_harness
        SubprocessASGIServer._instances[None] = server
        self._stack.callback(SubprocessASGIServer._instances.pop, None, None)
        self._stack.callback(server.stop)
        try:
            server.start()
            guard = reaper.spawn(pgids=[server.server_process.pid])  # stops it if the CLI is killed (kill -9)
            self._stack.callback(processes.terminate, guard, 5)
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
