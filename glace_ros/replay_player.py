"""Publishing a bag into a live graph shared with the relocalizer node, and recording its answers.

Modes (``PlayMode``):

- ``rate``: the bag's timing scaled by ``rate`` (frames the node cannot keep up with are dropped
  by it, as on a robot);
- ``lockstep``: one image at a time; the next goes out when the node answered the last one or
  reported it finished (its /diagnostics ``frames_processed + frames_dropped``);
- ``fast``: as fast as the node answers, two images in flight (one processing, one queued in the
  node's ``frame_queue``), so nothing is dropped;
- ``flood``: every message at once, a stress test: the node keeps only the newest images.

In ``lockstep`` and ``fast``, an image the node has not received (its /diagnostics
``frames_received`` stays behind) within ``resend_timeout`` is published again, up to
``max_resends`` times.
"""
from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from glace_ros.stamps import stamp_to_ns

logger = logging.getLogger(__name__)

__all__ = ["PLAY_MODES", "ReplayError", "Recorder", "PublishedFrame", "BagPlayer"]

PLAY_MODES = ("rate", "lockstep", "fast", "flood")
WINDOW = {"lockstep": 1, "fast": 2}  # images in flight


class ReplayError(RuntimeError):
    """The node could not be started, or the replay could not run."""


def message_class(msgtype: str):
    """'pkg/msg/Name' -> the rclpy message class."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"message type {msgtype} is not installed for rclpy: {exc}") from exc


@dataclass
class PublishedFrame:
    """One image of the replay: its stamp and when it was (last) published."""

    stamp_ns: int
    published_ns: int  # monotonic clock of the first publication (latency is measured from it)
    data: bytes  # the raw CDR image, kept for a re-send
    info: tuple[str, bytes] | None  # the CameraInfo published just before it (topic, raw)
    sent_ns: int = 0  # monotonic clock of the last publication
    resends: int = 0


class Recorder:
    """The node's answers by stamp with their arrival times, and its /diagnostics counters."""

    def __init__(self, node_name: str):
        self.cond = threading.Condition()
        self.answers: dict[int, tuple[np.ndarray, int]] = {}
        self.last_ns = 0
        self.finished = 0  # frames_processed + frames_dropped
        self.received = 0  # frames_received
        self.diagnostics: dict[str, str] = {}  # the node's latest /diagnostics key/values
        self.diagnostics_ns = 0  # monotonic clock when they arrived
        self._status_prefix = "/" + node_name.lstrip("/") + ":"

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if not str(status.name).startswith(self._status_prefix):
                continue
            values = {kv.key: kv.value for kv in status.values}
            try:
                finished = int(values["frames_processed"]) + int(values["frames_dropped"])
                received = int(values["frames_received"])
            except (KeyError, ValueError):
                continue
            with self.cond:
                self.finished, self.received = max(self.finished, finished), max(self.received, received)
                self.diagnostics, self.diagnostics_ns = values, time.monotonic_ns()
                self.cond.notify_all()

    def wait_final_diagnostics(self, timeout: float) -> bool:
        """Wait until /diagnostics arrived after the last answer, so that ``diagnostics`` counts every
        frame (the node publishes them at 1 Hz); False if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.diagnostics_ns <= self.last_ns:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def on_pose(self, msg) -> None:
        from glace_ros.pose_messages import pose_to_matrix

        now = time.monotonic_ns()
        stamp = stamp_to_ns(msg.header.stamp)
        with self.cond:
            self.answers.setdefault(stamp, (pose_to_matrix(msg.pose), now))
            self.last_ns = now
            self.cond.notify_all()


class BagPlayer:
    """Publishes a bag's messages on ``publishers`` (topic -> rclpy publisher) in one ``PlayMode``."""

    def __init__(self, publishers: dict, image_topic: str, info_topic: str, recorder: Recorder, node_alive,
                 mode: str, rate: float = 1.0, frame_timeout: float = 30.0, resend_timeout: float = 3.0,
                 max_resends: int = 3):
        if mode not in PLAY_MODES:
            raise ValueError(f"mode must be one of {PLAY_MODES}, got {mode!r}")
        self.publishers, self.image_topic, self.info_topic = publishers, image_topic, info_topic
        self.recorder, self.node_alive, self.mode, self.rate = recorder, node_alive, mode, rate
        self.frame_timeout, self.resend_timeout, self.max_resends = frame_timeout, resend_timeout, max_resends
        self.frames: list[PublishedFrame] = []
        self.resent = 0
        self._last_info: tuple[str, bytes] | None = None

    def play(self, messages, image_stamp) -> list[PublishedFrame]:
        """Publish ``messages`` (bag messages with topic, data, timestamp_ns); ``image_stamp(m)``
        gives an image message's header stamp. Returns the published images."""
        start_wall = start_bag = None
        for m in messages:
            if start_wall is None:
                start_wall, start_bag = time.monotonic(), m.timestamp_ns
            if self.mode == "rate":
                delay = start_wall + (m.timestamp_ns - start_bag) * 1e-9 / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._check_node()
            if m.topic != self.image_topic:
                self.publishers[m.topic].publish(m.data)
                if m.topic == self.info_topic:
                    self._last_info = (m.topic, m.data)
                continue
            now = time.monotonic_ns()
            frame = PublishedFrame(image_stamp(m), now, m.data, self._last_info, now)
            self.publishers[m.topic].publish(m.data)
            self.frames.append(frame)
            window = WINDOW.get(self.mode)
            if window is not None and len(self.frames) >= window:
                self._wait_finished(len(self.frames) - window)
        if self.mode in WINDOW:
            for i in range(max(len(self.frames) - WINDOW[self.mode] + 1, 0), len(self.frames)):
                self._wait_finished(i)
        return self.frames

    def _check_node(self) -> None:
        if not self.node_alive():
            raise ReplayError("the relocalizer node died during the replay")

    def _finished(self, index: int) -> bool:
        rec = self.recorder
        return self.frames[index].stamp_ns in rec.answers or rec.finished >= index + 1 + self.resent

    def _wait_finished(self, index: int) -> None:
        """Wait until frame ``index`` is answered or finished, re-sending what the node did not receive."""
        frame, rec = self.frames[index], self.recorder
        deadline = time.monotonic() + self.frame_timeout
        while True:
            with rec.cond:
                rec.cond.wait_for(lambda: self._finished(index), 0.2)
                if self._finished(index):
                    return
                lost = rec.received < len(self.frames) + self.resent
            self._check_node()
            now = time.monotonic()
            if lost and now - max(f.sent_ns for f in self.frames[index:]) * 1e-9 > self.resend_timeout:
                for f in self.frames[index:]:
                    if f.stamp_ns not in rec.answers and f.resends < self.max_resends:
                        self._resend(f)
                deadline = max(deadline, now + self.frame_timeout)
            if now > deadline:
                name = f"{frame.stamp_ns // 1_000_000_000}.{frame.stamp_ns % 1_000_000_000:09d}"
                logger.warning("no answer for the image at %s within %.1f s", name, self.frame_timeout)
                return

    def _resend(self, frame: PublishedFrame) -> None:
        logger.info("re-sending the image at %d ns (the node did not receive it)", frame.stamp_ns)
        if frame.info is not None:
            self.publishers[frame.info[0]].publish(frame.info[1])
        self.publishers[self.image_topic].publish(frame.data)
        frame.resends += 1
        frame.sent_ns = time.monotonic_ns()
        self.resent += 1

    def wait_tail(self, tail_timeout: float) -> None:
        """Wait for trailing answers: until all arrived or none came for ``tail_timeout`` seconds."""
        rec = self.recorder
        if self.mode in WINDOW:
            return  # every frame was waited for already
        with rec.cond:
            while True:
                missing = sum(f.stamp_ns not in rec.answers for f in self.frames)
                quiet_since = max(rec.last_ns, self.frames[-1].sent_ns if self.frames else 0)
                left = tail_timeout - (time.monotonic_ns() - quiet_since) * 1e-9
                if missing == 0 or left <= 0 or not self.node_alive():
                    break
                rec.cond.wait(min(left, 0.5))
