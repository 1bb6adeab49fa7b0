"""What both wire clients share: the base URL, the two timeouts, the server's key (if it asks for one)
and one pooled httpx client."""

from __future__ import annotations

import httpx

from trbench.backends.auth import auth_headers
from trbench.backends.streaming import http_timeout


class HttpClient:
    def __init__(self, base_url: str, timeout_s: float = 300.0, stall_timeout_s: float | None = 60.0,
                 api_key_env: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.stall_timeout_s = timeout_s, stall_timeout_s
        # trust_env off: a benchmark of a local server must never go through a proxy; the key (if the
        # server asks for one) goes with every request of this client
        self._http = httpx.Client(timeout=http_timeout(timeout_s, stall_timeout_s), trust_env=False,
                                  headers=auth_headers(api_key_env))

    def close(self) -> None:
        self._http.close()
