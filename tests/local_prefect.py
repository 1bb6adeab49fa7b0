"""A real local Prefect server with the UI, the `trbench` process pool, `prefect deploy --all` and
process workers, as separate processes (what `make ui` sets up), for the browser and fan-out tests.

prefect_test_harness does not serve the UI (its server runs with PREFECT_UI_ENABLED=0), so this
starts `prefect server start` itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")


class LocalPrefect:
    def __init__(self, home: Path, port: int, bind: str = "127.0.0.1"):
        self.home, self.port = home, port
        self.url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.url}/api"
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update({
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,           # the CLI, the workers and the UI (its api_url)
            "PREFECT_SERVER_API_HOST": bind,           # 0.0.0.0: reachable from other hosts (network namespaces)
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "CRITICAL",
            "PREFECT_LOGGING_LEVEL": "INFO",           # the worker's "submitting flow run" line, the flow's logs
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",  # cron runs appear within seconds
            "PWD": str(ROOT),                          # prefect.yaml: set_working_directory "{{ $PWD }}"
        })
        self.env = env
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.logs / log_name, "wb")
        proc = subprocess.Popen(args, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group: stopped with its children
        self.procs.append(proc)
        return proc

    def start_server(self, timeout: float = 180) -> None:
        proc = self._spawn([PREFECT, "server", "start"], "server.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({proc.returncode}): {self.log('server.log')[-2000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"prefect server not up after {timeout} s: {self.log('server.log')[-2000:]}")

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([PREFECT, "--no-prompt", *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def start_worker(self, name: str, limit: int | None = None, queue: str | None = None,
                     netns: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A process worker; with netns, inside that network namespace (another host), env on top of the
        server's (there, at least PREFECT_API_URL at an address that host reaches)."""
        args = [PREFECT, "worker", "start", "--pool", "trbench", "--name", name]
        args += ["--limit", str(limit)] if limit else []
        args += ["--work-queue", queue] if queue else []
        return self._spawn(["ip", "netns", "exec", netns, *args] if netns else args, f"worker-{name}.log", env)

    def wait_workers_online(self, names: set[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        online: set[str] = set()
        while time.monotonic() < deadline:
            r = httpx.post(f"{self.api_url}/work_pools/trbench/workers/filter", json={}, timeout=10)
            online = {w["name"] for w in r.json() if w.get("status") == "ONLINE"}
            if names <= online:
                return
            time.sleep(1)
        raise TimeoutError(f"workers {names - online} not online after {timeout} s")

    def log(self, name: str) -> str:
        path = self.logs / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Workers first (they talk to the server on their way out), the server last; each with its
        process group (a worker's flow runs and their llama.cpp servers): INT, then TERM, then KILL."""
        for proc in reversed(self.procs):
            for sig, wait in ((signal.SIGINT, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
