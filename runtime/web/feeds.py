"""Each camera's frames for its viewers: encoded at most N a second, only while someone watches.

A :class:`Feed` runs on the web server's event loop. While a camera has a viewer (an MJPEG stream,
or a page waiting for its next frame) or had one in the last :data:`LINGER_S` seconds, it asks the
camera's state for its latest frame as JPEG at most ``fps`` times a second, and only when a new
frame has come; the encoding runs on one worker thread shared by every camera (never on the frame
loop's thread, never on the event loop's). Every viewer of a camera gets the same JPEG: two viewers
cost what one does. A camera takes at most ``max_viewers`` viewers at once; past that a viewer is
refused (:class:`Full`). A viewer that stops reading is dropped by the server once a frame could
not be sent within its write timeout (``runtime.web.server``); a slow one simply skips frames, since
only the latest is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import Executor
from typing import Any, Iterator

LINGER_S = 3.0  # a page asks for its next frame right after the last: keep encoding across the gap
WAIT_S = 10.0  # a page's request for a new frame is answered "none yet" (204) after this long


class Full(Exception):
    """The camera has as many viewers as it takes."""


class Feed:
    """One camera's latest JPEG for viewers, numbered (``seq``) so a viewer asks for a newer one."""

    def __init__(self, state: Any, executor: Executor, fps: float, max_viewers: int, quality: int = 80,
                 max_width: int | None = 960) -> None:
        self.state = state
        self.executor = executor
        self.interval = 1.0 / fps
        self.max_viewers = max_viewers
        self.quality, self.max_width = quality, max_width
        self.viewers = 0
        self.jpeg: bytes | None = None
        self.seq = 0
        self.encoded = 0  # frames encoded for viewers (a test and the summary read it)
        self.refused = 0
        self.stalled = 0  # viewers dropped because they stopped reading
        self._frame = -1  # the camera's frame count at the last encoding
        self._last_seen = 0.0
        self._task: asyncio.Task | None = None
        self._changed: asyncio.Condition | None = None

    @contextlib.contextmanager
    def viewer(self) -> Iterator[None]:
        """One viewer while the block runs (:class:`Full` when the camera has its maximum)."""
        if self.viewers >= self.max_viewers:
            self.refused += 1
            raise Full(self.state.name)
        self.viewers += 1
        self._ensure_running()
        try:
            yield
        finally:
            self.viewers -= 1
            self._last_seen = time.monotonic()

    async def next(self, after: int, timeout: float = WAIT_S) -> tuple[int, bytes] | None:
        """The latest JPEG once it is newer than ``after`` (at once when it already is); None when
        none came within ``timeout`` seconds."""
        changed = self._condition()
        deadline = time.monotonic() + timeout
        async with changed:
            while self.jpeg is None or self.seq <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except asyncio.TimeoutError:
                    return None
            return self.seq, self.jpeg

    def watched(self) -> bool:
        return self.viewers > 0 or time.monotonic() - self._last_seen < LINGER_S

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self.jpeg = None  # what was encoded before nobody watched is stale: never sent
            self._frame = -1
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        changed = self._condition()
        while self.watched():
            started = time.monotonic()
            frames = self.state.frames
            if frames != self._frame:
                jpeg = await loop.run_in_executor(self.executor, self.state.frame_jpeg, self.quality, self.max_width)
                self._frame = frames
                if jpeg is not None:
                    self.encoded += 1
                    async with changed:
                        self.jpeg, self.seq = jpeg, self.seq + 1
                        changed.notify_all()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def report(self) -> dict[str, Any]:
        return {"viewers": self.viewers, "encoded": self.encoded, "refused": self.refused, "stalled": self.stalled}
