"""The relocalizer's counters and its /diagnostics status.

:class:`NodeStats` is updated by the image callback (received, dropped) and the worker thread
(processed, localized, each rejection by cause); :func:`diagnostic_status` turns a snapshot into
a ``diagnostic_msgs/DiagnosticStatus`` (level, message, key/values) once a second.

Rejection causes are short keys (``image``, ``no_camera_info``, ``ransac_failed``, ``few_inliers``,
``low_inlier_ratio``, ``uncertain``, ``jump``, ``stale_odom``, ...); each appears as
``rejected_<cause>`` with its count. ``waiting`` holds reasons that some outputs are held back
(e.g. no odom -> camera transform yet), reported as a WARN with the reason.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

__all__ = ["NodeStats", "diagnostic_status"]

RECENT_S = 10.0  # a pose published within this many seconds counts as "localizing"


class NodeStats:
    """Counters and recent timings of one node (thread-safe through ``lock``)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = self.processed = self.localized = self.dropped = 0
        self.rejected: dict[str, int] = {}
        self.reasons: dict[str, str] = {}  # cause -> the latest message of that cause
        self.waiting: dict[str, str] = {}  # output -> why it is held back
        self.last_inliers = -1
        self.last_mapping_distance_m = float("nan")  # the last pose's distance from the mapping views
        self.last_error = ""
        self.latency_s: deque[float] = deque(maxlen=20)  # image received -> pose published
        self.processing_s: deque[float] = deque(maxlen=20)  # localizer time
        self.published_at: deque[float] = deque(maxlen=50)  # monotonic times of published poses

    def reject(self, cause: str, reason: str) -> None:
        with self.lock:
            self.rejected[cause] = self.rejected.get(cause, 0) + 1
            self.reasons[cause] = reason
            self.last_error = f"{cause}: {reason}"

    def wait(self, output: str, reason: str | None) -> None:
        """Say why ``output`` is held back (None: it is not)."""
        with self.lock:
            if reason is None:
                self.waiting.pop(output, None)
            else:
                self.waiting[output] = reason

    def image_received(self, dropped_older: bool) -> None:
        with self.lock:
            self.received += 1
            self.dropped += int(dropped_older)

    def frame_done(self, processing_s: float | None = None, inliers: int | None = None,
                   mapping_distance_m: float | None = None) -> None:
        with self.lock:
            self.processed += 1
            if processing_s is not None:
                self.processing_s.append(processing_s)
            if inliers is not None:
                self.last_inliers = inliers
            if mapping_distance_m is not None:
                self.last_mapping_distance_m = mapping_distance_m

    def pose_published(self, latency_s: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.localized += 1
            self.latency_s.append(latency_s)
            self.published_at.append(now)


def diagnostic_status(stats: NodeStats, name: str, image_topic: str, hardware_id: str) -> DiagnosticStatus:
    """The DiagnosticStatus of ``stats``: OK while poses flow, WARN without images, without recent
    poses or while an output is held back (the message says why)."""
    now = time.monotonic()
    with stats.lock:
        recent = [t for t in stats.published_at if now - t <= RECENT_S]
        span = recent[-1] - recent[0] if len(recent) >= 2 else 0.0
        rate = (len(recent) - 1) / span if span > 0 else 0.0
        latency = 1e3 * float(np.mean(stats.latency_s)) if stats.latency_s else float("nan")
        processing = 1e3 * float(np.mean(stats.processing_s)) if stats.processing_s else float("nan")
        values = {
            "frames_received": stats.received, "frames_processed": stats.processed,
            "frames_localized": stats.localized, "frames_dropped": stats.dropped,
            "frames_rejected": sum(stats.rejected.values()), "rate_hz": f"{rate:.2f}",
            "latency_ms": f"{latency:.1f}", "processing_ms": f"{processing:.1f}",
            "inlier_count": stats.last_inliers, "mapping_view_distance_m": f"{stats.last_mapping_distance_m:.3f}",
            "last_error": stats.last_error,
            **{f"rejected_{k}": v for k, v in sorted(stats.rejected.items())},
            **{f"waiting_{k}": v for k, v in sorted(stats.waiting.items())},
        }
        if stats.received == 0:
            level, message = DiagnosticStatus.WARN, f"no images received on {image_topic}"
        elif not recent:
            level, message = DiagnosticStatus.WARN, "no pose published in the last 10 s"
        elif stats.waiting:
            level = DiagnosticStatus.WARN
            message = f"localizing at {rate:.1f} Hz; " + "; ".join(f"{k}: {v}" for k, v in sorted(stats.waiting.items()))
        else:
            level, message = DiagnosticStatus.OK, f"localizing at {rate:.1f} Hz"
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
