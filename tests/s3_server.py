"""A real S3-compatible server on loopback for the object-storage tests: moto's server mode (PyPI `moto[server]`,
`python -m moto.server`), one per test module (a fixture yielding from serve()), with a bucket made in it. The credentials are made up for the
test: the secret is random, so that a test can search every output for it. What moto does not emulate of S3 is
in docs/object-storage.md."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import free_port

BUCKET = "trbench-results"


@dataclass
class S3Server:
    endpoint: str
    secret: str
    log: Path  # the server's request log: one line per request (method and key)
    env: dict[str, str] = field(default_factory=dict)  # what a process needs to reach it: the standard AWS variables

    def filesystem(self):
        """An s3fs filesystem of the server (its own instance: nothing cached across tests)."""
        import s3fs

        return s3fs.S3FileSystem(key=self.env["AWS_ACCESS_KEY_ID"], secret=self.secret, skip_instance_cache=True,
                                 client_kwargs={"endpoint_url": self.endpoint})


def serve(tmp_path_factory, bind: str = "127.0.0.1") -> Iterator[S3Server]:
    """The server for as long as the generator runs: a module's fixture yields from it. Its endpoint is on
    loopback; bind 0.0.0.0 makes it reachable from other hosts (network namespaces) too."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "requests.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", bind, "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto's S3 server did not start within 30 s")
                time.sleep(0.1)
        secret = "s3cr3t-" + secrets.token_hex(12)
        env = {"AWS_ACCESS_KEY_ID": "AKIATRBENCHTEST", "AWS_SECRET_ACCESS_KEY": secret,
               "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
        server = S3Server(endpoint=endpoint, secret=secret, log=log, env=env)
        httpx.put(f"{endpoint}/{BUCKET}", timeout=10).raise_for_status()  # us-east-1: no location constraint
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def without_aws(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment less any AWS setting of the machine: the tests' own are the only ones."""
    return {k: v for k, v in (environ or os.environ).items() if not k.startswith("AWS_")}
