"""``--webhook URL``: every event message as an HTTP POST of its JSON, from a bounded queue.

Each POST has ``--webhook-timeout`` seconds. A 2xx answer is delivered; 408, 429 and 5xx answers,
timeouts and connection errors are retried with backoff (0.5 s doubling to 30 s) up to ``retries``
times, then counted as failed; other answers (a 4xx: the request is wrong) fail at once. A redirect (3xx)
is never followed (it would carry the token, or lose the body, to another address): it fails at
once, naming where it pointed, so ``--webhook`` can be given the final URL. The queue
(:class:`runtime.outbox.Outbox`) never blocks the frame loop, and at the end waits at most its
drain's deadline for a receiver that hangs; the summary reports what was sent and what was not. A
token for the ``Authorization`` header comes from the environment (``JRC_WEBHOOK_TOKEN``), never
the command line; user:password in the URL is refused for the same reason.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from runtime import __version__
from runtime.errors import EXIT_USAGE, UserError
from runtime.outbox import DRAIN_S, Drain, Outbox, receiver_url

TOKEN_ENV = "JRC_WEBHOOK_TOKEN"
RETRY_STATUS = (408, 429)


class _Retry(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer comes back as an HTTPError instead of being followed."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def check_url(url: str) -> str:
    receiver_url(url, "--webhook", ("http", "https"), "an http:// or https:// URL with a host",
                 f"a token in the environment variable {TOKEN_ENV}")
    if not url.isascii():  # http.client sends ASCII only: every POST would fail
        raise UserError(f"--webhook {url}: holds characters beyond ASCII; percent-encode them in the path and "
                        "query, and give a host name in its xn-- form", EXIT_USAGE)
    return url


class WebhookSink(Outbox):
    name = "webhook"

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, maxlen: int = 1000,
                 backoff: float = 0.5, drain: Drain | None = None) -> None:
        super().__init__(maxlen=maxlen, backoff=backoff, drain_s=min(DRAIN_S, max(1.0, 2 * timeout)), drain=drain)
        self.url = check_url(url)
        self.timeout = timeout
        self.retries_per_message = max(0, int(retries))
        self._tries = 0
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._headers = {"Content-Type": "application/json", "User-Agent": f"jrc-edge/{__version__}"}
        token = os.environ.get(TOKEN_ENV)
        if token:
            self._headers["Authorization"] = f"Bearer {token.strip()}"
        self.start()

    def publish(self, message: dict[str, Any]) -> None:
        from runtime.events import public
        from runtime.sinks import to_json

        self.put(to_json(public(message)).encode("utf-8"))

    def deliver(self, body: bytes) -> bool:
        req = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                resp.read(65536)
            self._tries = 0
            return True
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:  # given up at once: the same URL would be redirected again
                self._tries = 0
                where = (e.headers.get("Location") or "(no Location)")[:200]
                self.last_error = f"HTTP {e.code}: redirected to {where}; point --webhook at the final URL"
                return False
            retry = e.code >= 500 or e.code in RETRY_STATUS
            self.last_error = f"HTTP {e.code}"
            if not retry:
                self._tries = 0
                return False
            return self._again(f"HTTP {e.code}")
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            return self._again(f"{type(reason).__name__}: {reason}")

    def _again(self, why: str) -> bool:
        """Retry (raise) until this message has had ``retries`` retries; then give it up."""
        self.last_error = why
        if self._tries >= self.retries_per_message:
            self._tries = 0
            return False
        self._tries += 1
        raise _Retry(why)

    def report(self) -> dict[str, Any]:
        from runtime.redact import shown

        return {"url": shown(self.url), **super().report()}
