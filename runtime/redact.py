"""What the box shows of a camera's address: the address with its credentials hidden.

A camera's URL or pipeline may hold a password (``rtsp://user:password@host/…``, a GStreamer
``rtspsrc … user-pw=…``, ``?pwd=…`` in a snapshot URL). Credentials belong in the cameras TOML file
(or the environment); nothing the box writes, logs, serves or sends repeats them: every source
string that leaves the process, and every error message, goes through :func:`shown`.
"""

from __future__ import annotations

import re

# a password in a URL (user:password@), a GStreamer rtspsrc's user-pw=, a secret in a query string
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^\s/]*@")  # to the host's @ (a password may hold @)
_PIPE_SECRET = re.compile(r"((?:^|\s)(?:user-pw|password|passwd)\s*=\s*)(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
_QUERY_SECRET = re.compile(r"([?&][^=&\s]*(?:pass|pwd|token|secret|key|auth|sig)[^=&\s]*=)[^&\s]*", re.IGNORECASE)
HIDDEN = "***"


def shown(text: str) -> str:
    """``text`` (a source string, or a message holding one) with its credentials replaced by ``***``:
    what the outputs, logs, the live view and the sinks show of a camera's address. Credentials
    belong in the cameras TOML file; nothing the box writes or serves repeats them."""
    text = _USERINFO.sub(rf"\1:{HIDDEN}@", str(text))
    text = _QUERY_SECRET.sub(rf"\1{HIDDEN}", text)
    return _PIPE_SECRET.sub(rf"\1{HIDDEN}", text)
