"""What the box shows of a camera's address: the address with its credentials hidden.

A camera's URL or pipeline may hold a password (``rtsp://user:password@host/…``, a GStreamer
``rtspsrc … user-pw=…``, ``?pwd=…`` in a snapshot URL). Credentials belong in the cameras TOML file
(or the environment); nothing the box writes, logs, serves or sends repeats them: every source
string that leaves the process, and every error message, goes through :func:`shown`.
"""

from __future__ import annotations

import re

# a URL (up to whitespace); in it: a password (user:password@, which may hold '@' or '/') and a
# secret query value (the parameter named exactly so); in a GStreamer pipeline: an element's password
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s]+")
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):\S*@")
_QUERY_SECRET = re.compile(r"([?&;](?:pass|password|passwd|pwd|pw|passphrase|token|access_token|auth|authorization|"
                           r"key|apikey|api_key|secret|sig|signature)=)(.*?)(?=[&;#]|:(?:\s|$)|$)", re.IGNORECASE)
_PIPE_SECRET = re.compile(r"((?:^|\s)(?:user-pw|proxy-pw|password|passwd)\s*=\s*)(\"[^\"]*\"|'[^']*'|\S+)",
                          re.IGNORECASE)
HIDDEN = "***"


def _url_shown(m: re.Match) -> str:
    url = _USERINFO.sub(rf"\1:{HIDDEN}@", m.group(0))
    return _QUERY_SECRET.sub(rf"\1{HIDDEN}", url)


def shown(text: str) -> str:
    """``text`` (a source string, or a message holding one) with its credentials replaced by ``***``:
    what the outputs, logs, the live view and the sinks show of a camera's address. Only URLs and
    GStreamer password properties are touched (a local file's path is shown as it is). Credentials
    belong in the cameras TOML file; nothing the box writes or serves repeats them."""
    text = _URL.sub(_url_shown, str(text))
    return _PIPE_SECRET.sub(rf"\1{HIDDEN}", text)
