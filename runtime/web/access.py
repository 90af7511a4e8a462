"""Who may read the live view: loopback by default, a token everywhere else.

- ``--web PORT`` listens on 127.0.0.1. Without a token, a request is served only when its ``Host``
  names this machine (``localhost``, ``127.x.x.x``, ``::1``): a web page elsewhere that points a
  name of its own at 127.0.0.1 (DNS rebinding) is refused, so it cannot read the view through the
  browser of the person who runs the box.
- ``--web HOST:PORT`` with any other host needs ``--web-token-file FILE``; the token is then checked
  on every route (the page, its files, the JSON, the frames and streams, snapshots and clips),
  given as ``Authorization: Bearer TOKEN``, as the cookie ``jrc_token``, or as ``?token=TOKEN``.
  Opening ``/?token=TOKEN`` once sets the cookie (HttpOnly, SameSite=Lax) and sends the browser on
  to ``/``, so the token leaves the address bar and every later request (``<img>``, ``<video>``,
  ``fetch``) carries it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import stat
import sys
from pathlib import Path
from typing import Mapping

from runtime.errors import EXIT_USAGE, UserError

COOKIE = "jrc_token"
MIN_TOKEN = 16
MAKE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE; chmod 600 FILE"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only."""
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def tunnel(host: str, port: int) -> str:
    """How another machine reaches a view that listens on loopback ``host`` only: an SSH tunnel to
    that very address (``[::1]`` for IPv6: a tunnel to 127.0.0.1 finds nothing there)."""
    target = f"[{host}]" if ":" in host else host
    return f"ssh -L {port}:{target}:{port} USER@THIS-HOST, then open http://localhost:{port}/"


def host_name(header: str | None) -> str:
    """The name in a ``Host`` header (``127.0.0.1:8090`` → ``127.0.0.1``, ``[::1]:8090`` → ``::1``)."""
    h = (header or "").strip()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def read_token(path: str, warn: bool = True) -> str:
    """The token in ``path`` (its first line); a missing, unreadable or short one is a one-line error.
    A file others may read is a warning (``warn``): the token is a password."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise UserError(f"--web-token-file {path}: cannot be read ({why}); write a token into it: {MAKE_TOKEN}",
                        EXIT_USAGE) from None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise UserError(f"--web-token-file {path}: needs a token of at least {MIN_TOKEN} characters without "
                        f"spaces on its first line; make one with: {MAKE_TOKEN}", EXIT_USAGE)
    try:
        if warn and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(f"jrc-detect: warning: --web-token-file {path}: others may read it; chmod 600 {path}",
                  file=sys.stderr)
    except OSError:
        pass
    return token


def check_bind(host: str, address: str, token_file: str | None) -> None:
    """Listening beyond this machine needs a token (before anything opens; exit code 2)."""
    if not is_loopback(host) and not token_file:
        raise UserError(f"--web {address}: listening beyond this machine needs --web-token-file FILE (every "
                        f"request must then carry the token; make one with: {MAKE_TOKEN}); or leave the host out "
                        "to listen on 127.0.0.1 and reach it through an SSH tunnel", EXIT_USAGE)
    if token_file and not os.path.isfile(token_file):
        raise UserError(f"--web-token-file {token_file}: no such file; make one with: {MAKE_TOKEN}", EXIT_USAGE)


class Access:
    """The decision for one request: its headers, cookies and query → allowed or the reason why not."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token else None

    @property
    def needs_token(self) -> bool:
        return self._token is not None

    def matches(self, given: str | None) -> bool:
        return bool(given) and self._token is not None and hmac.compare_digest(given.encode("utf-8"), self._token)

    def refusal(self, headers: Mapping[str, str], cookies: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """None when the request may be served, else why not (said in the 401/403 answer)."""
        if self._token is None:
            if not is_loopback(host_name(headers.get("Host"))):
                return "this view answers requests for localhost only (the Host header names another machine)"
            return None
        auth = headers.get("Authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if any(self.matches(t) for t in (bearer, cookies.get(COOKIE), query.get("token"))):
            return None
        return "this view needs its token: open /?token=TOKEN once (the token in --web-token-file)"
