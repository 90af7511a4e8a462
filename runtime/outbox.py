"""A bounded queue drained by its own thread: how event sinks deliver without ever blocking the frame loop.

:meth:`Outbox.put` never waits: when the queue is full the oldest message is dropped and counted
(the newest says the most about an ongoing event). A worker thread hands each message to
:meth:`Outbox.deliver`, which returns True (delivered), False (given up: counted as failed) or
raises (counted as a retry and tried again after a backoff that doubles up to ``max_backoff``).
:meth:`Outbox.close` gives the queue until a deadline to empty, then counts what is left (the
message in flight included) as undelivered. Outboxes opened together share one :class:`Drain`: the
first to be closed starts every one's drain, so they empty in parallel and all stop by the same
deadline; closing all of a run's network sinks takes at most ``DRAIN_S`` (plus a moment for MQTT's
goodbye), whatever their receivers do, so the summary is written well before a service manager's
stop timeout.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import deque
from typing import Any

from runtime.errors import EXIT_USAGE, UserError

DRAIN_S = 8.0  # closing the network sinks of a run, all together


def receiver_url(url: str, flag: str, schemes: tuple[str, ...], expected: str, secrets: str) -> urllib.parse.SplitResult:
    """A sink's URL, checked: one of ``schemes`` with a host, a port (if any) from 1 to 65535, no space
    or control character, and no user:password in it (a command line is visible to every user of the
    machine; ``secrets`` says where they go instead). Refused at the start, not at every send."""
    bad = next((c for c in url if c.isspace() or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UserError(f"{flag} {url!r}: a URL may not hold {bad!r}; remove it or percent-encode it "
                        f"(a space is %20)", EXIT_USAGE)
    try:
        u = urllib.parse.urlsplit(url)
    except ValueError as e:
        raise UserError(f"{flag} {url}: not a URL ({e}); expected {expected}", EXIT_USAGE) from None
    if u.scheme not in schemes or not u.hostname:
        raise UserError(f"{flag} {url}: expected {expected}", EXIT_USAGE)
    try:
        port = u.port
    except ValueError:
        port = 0
    if port == 0:
        raise UserError(f"{flag} {url}: the port is not a number from 1 to 65535; give one, or leave it out "
                        "for the scheme's default", EXIT_USAGE)
    if u.username or u.password:
        raise UserError(f"{flag} {url}: credentials on the command line are visible to every user (ps); drop them "
                        f"from the URL and use {secrets}", EXIT_USAGE)
    return u


class Drain:
    """One deadline for closing a group of outboxes: set when the first of them is closed (``seconds``
    later, or sooner if that close was given a sooner one); every member then drains at once."""

    def __init__(self, seconds: float = DRAIN_S) -> None:
        self.seconds = seconds
        self.members: list[Outbox] = []
        self.deadline: float | None = None
        self._lock = threading.Lock()

    def start(self, deadline: float | None = None) -> float:
        """The group's deadline (``time.monotonic()``), starting every member's drain the first time."""
        with self._lock:
            first = self.deadline is None
            soonest = time.monotonic() + self.seconds if first else self.deadline
            self.deadline = min(soonest, deadline) if deadline is not None else soonest
            members = list(self.members) if first else []
        for m in members:
            m.begin_close()
        return self.deadline


class Outbox:
    name = "outbox"

    def __init__(self, maxlen: int = 1000, backoff: float = 0.5, max_backoff: float = 30.0,
                 drain_s: float = 5.0, drain: Drain | None = None) -> None:
        self.maxlen = max(1, int(maxlen))
        self.backoff, self.max_backoff = backoff, max_backoff
        self.drain = drain if drain is not None else Drain(drain_s)
        self.drain.members.append(self)
        self.sent = self.failed = self.dropped = self.retries = self.left = 0
        self.last_error: str | None = None
        self._q: deque[Any] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()  # set: stop after the queue (close's drain)
        self._kill = threading.Event()  # set: stop now
        self._closed = False  # counted: a delivery that ends later changes nothing
        self._thread = threading.Thread(target=self._work, name=f"jrc-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, message: Any) -> None:
        with self._cond:
            if len(self._q) >= self.maxlen:
                self._q.popleft()
                self.dropped += 1
            self._q.append(message)
            self._cond.notify()

    @property
    def pending(self) -> int:
        return len(self._q)

    def deliver(self, message: Any) -> bool:
        raise NotImplementedError

    def wait_retry(self, seconds: float) -> bool:
        """Sleep between tries; True when the outbox is being killed."""
        return self._kill.wait(seconds)

    def _work(self) -> None:
        while not self._kill.is_set():
            with self._cond:
                while not self._q and not self._stop.is_set():
                    self._cond.wait(0.5)
                if not self._q:
                    return
                message = self._q[0]
            delay = self.backoff
            while not self._kill.is_set():
                try:
                    ok = self.deliver(message)
                except Exception as e:  # noqa: BLE001 - any failure of one delivery is a retry
                    self.retries += 1
                    self.last_error = str(e) or type(e).__name__
                    if self.wait_retry(delay):
                        return
                    delay = min(delay * 2, self.max_backoff)
                    continue
                with self._cond:
                    if self._closed:  # given up at the deadline: already counted as left
                        return
                    if self._q and self._q[0] is message:
                        self._q.popleft()
                    if ok:
                        self.sent += 1
                    else:
                        self.failed += 1
                break

    def begin_close(self) -> None:
        """Stop once the queue is empty (what is put later waits for :meth:`close` and counts as left)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self, deadline: float | None = None) -> None:
        """Deliver what is queued until the group's deadline (``time.monotonic()``; ``deadline`` may
        bring it sooner), then stop; the rest counts as undelivered. A delivery still under way (a
        receiver that hangs) is left to its own thread, which ends with the process."""
        deadline = self.drain.start(deadline)
        self.begin_close()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._kill.set()
        with self._cond:
            self._closed = True
            self.left = len(self._q)
        if self.left and self.last_error is None:
            self.last_error = "still queued or in flight when the drain's time ran out"

    def report(self) -> dict[str, Any]:
        """Counters for the summary: what was delivered and what was not (failed, dropped when the
        queue was full, left at the end)."""
        from runtime.redact import shown

        return {"sent": self.sent, "failed": self.failed, "dropped": self.dropped, "left": self.left,
                "undelivered": self.failed + self.dropped + self.left, "retries": self.retries,
                "last_error": shown(self.last_error) if self.last_error else self.last_error}
