"""A bounded frame queue that keeps the newest frames, with one worker thread.

Image callbacks ``put`` each frame into a queue of ``capacity`` slots (1 by default); when it is
full the oldest waiting frame is dropped (``put`` says so), so with one slot latency stays at most
about two processing times however fast images arrive. A replay tool that must not lose frames
sets a larger capacity and keeps at most that many frames in flight. The worker thread takes the
oldest waiting frame and calls ``handle`` on it; an exception from ``handle`` goes to ``on_error``
and the worker goes on.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable

__all__ = ["LatestFrameWorker"]


class LatestFrameWorker:
    """A bounded queue, one thread (see the module docstring)."""

    def __init__(self, handle: Callable[[Any], None], on_error: Callable[[Exception], None], name: str,
                 capacity: int = 1):
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._handle, self._on_error = handle, on_error
        self._queue: deque = deque()
        self.capacity = int(capacity)
        self._busy = False
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> threading.Event:
        """Set when the worker is asked to stop (long waits inside ``handle`` should watch it)."""
        return self._stop

    def put(self, item: Any) -> bool:
        """Queue ``item`` for the worker; True when the queue was full and its oldest frame was dropped."""
        with self._cond:
            dropped = len(self._queue) >= self.capacity
            if dropped:
                self._queue.popleft()
            self._queue.append(item)
            self._cond.notify_all()
        return dropped

    def idle(self) -> bool:
        """No frame waiting and none in progress."""
        with self._cond:
            return not self._queue and not self._busy

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(0.2)
                if self._stop.is_set():
                    break
                item, self._busy = self._queue.popleft(), True
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the worker
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread after the frame in progress (the waiting one is discarded)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
