"""When and where the global descriptor of a GLACE head runs: :class:`GlobalDescriptorSource`.

A head with a global input needs a (1, G) descriptor per frame (R2Former on the RGB image). Modes:
every frame; every N frames (the computed one reused in between, a stall on every N-th frame);
in the background (its own thread at a lower priority, at most every N frames; a frame gets the
latest finished descriptor and never waits, except the first, which computes its own since zeros
would give a GLACE map wrong poses); or off (zeros). Measurements: glace_core/localizer.py, "Threads".
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

_logger = logging.getLogger(__name__)

__all__ = ["GLOBAL_MODES", "BACKGROUND_NICE", "GlobalDescriptorSource"]

#: when the global descriptor is computed: every frame, every N frames (reused between), on a thread
#: of its own at most every N frames (the latest finished one is used), never (zeros)
GLOBAL_MODES = ("every_frame", "every_n", "background", "off")
#: nice value of the background descriptor thread (Linux; higher is lower priority): the pose path
#: keeps the cores, the descriptor runs in what is left
BACKGROUND_NICE = 10


class GlobalDescriptorSource:
    """(1, G) global features for a head with a ``G``-wide global input.

    descriptor: module RGB (1, 3, H, W) in [0, 1] -> (1, G), or None (zeros are used). In mode
    "every_n" a computed descriptor is reused for the next ``every_n - 1`` frames. In mode
    "background" the descriptor runs on a thread of its own (nice :data:`BACKGROUND_NICE`): a frame
    starts a computation on a copy of its image when none is running and ``every_n`` frames have
    passed since the last one started, and gets the latest finished descriptor without waiting.
    The first frame, with no descriptor yet, computes its own on the caller's thread (waits once:
    zeros would give a GLACE map wrong poses); so does the first frame after :meth:`reset`. A
    background computation that fails is logged and the previous descriptor kept.
    """

    def __init__(self, channels: int, descriptor: nn.Module | None, device: torch.device):
        self.channels, self.descriptor, self.device = int(channels), descriptor, device
        self._cached: torch.Tensor | None = None
        self._age = 0
        self._executor: ThreadPoolExecutor | None = None
        self._running: Future | None = None  # the background computation (dropped, never adopted, by reset)

    def __call__(self, rgb: np.ndarray, mode: str, every_n: int) -> tuple[torch.Tensor | None, bool]:
        """(features (1, G) or None for heads without global input, computed for this frame)."""
        if not self.channels:
            return None, False
        if self.descriptor is None or mode == "off":
            return torch.zeros(1, self.channels, device=self.device), False
        if mode == "background":
            return self._background(rgb, every_n)
        if mode == "every_n" and self._cached is not None and self._age < every_n:
            self._age += 1
            return self._cached, False
        self._cached, self._age = self._compute(rgb), 1
        return self._cached, True

    @property
    def running(self) -> bool:
        """A background computation is in progress."""
        return self._running is not None and not self._running.done()

    def reset(self) -> None:
        """Forget the descriptor (the next frame computes its own); a running computation is dropped."""
        self._cached, self._age, self._running = None, 0, None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running background computation (shutdown, tests); False if it still runs."""
        running = self._running
        if running is None:
            return True
        try:
            running.exception(timeout)
        except TimeoutError:
            return False
        return True

    def _compute(self, rgb: np.ndarray) -> torch.Tensor:
        rgb3 = rgb if rgb.ndim == 3 else np.repeat(rgb[:, :, None], 3, axis=2)
        image = torch.from_numpy(np.ascontiguousarray(rgb3)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        with torch.inference_mode():
            feats = self.descriptor(image).float()
        if feats.shape != (1, self.channels):
            raise ValueError(f"global descriptor gives {tuple(feats.shape)}, the head expects (1, {self.channels})")
        return feats

    def _collect(self) -> None:
        """Adopt a finished background result."""
        running = self._running
        if running is None or not running.done():
            return
        self._running = None
        exc = running.exception()
        if exc is not None:
            _logger.warning("background global descriptor failed (%s: %s); keeping the previous one",
                            type(exc).__name__, exc)
            return
        self._cached = running.result()

    def _background(self, rgb: np.ndarray, every_n: int) -> tuple[torch.Tensor, bool]:
        self._collect()
        if self._cached is None:  # the first frame: its own descriptor, on this thread
            self._cached, self._age = self._compute(rgb), 1
            return self._cached, True
        if self._running is None and self._age >= every_n:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, "glace-global-descriptor", initializer=_lower_priority)
            self._running = self._executor.submit(self._compute, np.array(rgb))
            self._age = 0
        self._age += 1
        return self._cached, False


def _lower_priority() -> None:
    """Give the calling thread nice BACKGROUND_NICE (Linux threads have their own; elsewhere a no-op).
    Threads it starts later (torch's OpenMP team) inherit it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except (AttributeError, OSError) as exc:
        _logger.debug("background descriptor thread keeps its priority: %s", exc)
