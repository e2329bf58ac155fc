"""Time stamps: the one conversion between ROS times and integer nanoseconds.

:func:`stamp_to_ns` reads every form a stamp arrives in (a builtin_interfaces/Time from rclpy or
rosbags, an rclpy.time.Time, integer nanoseconds, float seconds); :func:`ns_to_time` makes the
rclpy builtin_interfaces/msg/Time for a header. (rosbags messages need the rosbags Time type:
:func:`glace_ros.bag_io.ns_to_rosbags_time`.)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["NS_PER_S", "stamp_to_ns", "ns_to_time"]

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """A stamp as integer nanoseconds.

    Accepts a builtin_interfaces/Time (``sec``, ``nanosec``; rclpy or rosbags), an rclpy.time.Time
    (``nanoseconds``), an int (nanoseconds) or a float (seconds). Raises TypeError for anything
    else and ValueError for a Time whose ``nanosec`` is outside [0, 1e9) or a non-finite float.
    """
    if hasattr(stamp, "sec") and hasattr(stamp, "nanosec"):
        sec, nanosec = int(stamp.sec), int(stamp.nanosec)
        if not 0 <= nanosec < NS_PER_S:
            raise ValueError(f"stamp nanosec must be in [0, 1e9), got sec={sec}, nanosec={nanosec}")
        return sec * NS_PER_S + nanosec
    if hasattr(stamp, "nanoseconds") and not isinstance(stamp, (int, float)):
        return int(stamp.nanoseconds)
    if isinstance(stamp, (bool, np.bool_)):
        raise TypeError("stamp must be a builtin_interfaces/Time, int ns or float s, got a bool")
    if isinstance(stamp, (int, np.integer)):
        return int(stamp)
    if isinstance(stamp, (float, np.floating)):
        if not math.isfinite(stamp):
            raise ValueError(f"stamp in seconds must be finite, got {stamp}")
        return int(round(float(stamp) * NS_PER_S))
    raise TypeError(f"stamp must be a builtin_interfaces/Time, int ns or float s, got {type(stamp).__name__}")


def ns_to_time(ns: int):
    """Integer nanoseconds -> rclpy builtin_interfaces/msg/Time (nanosec in [0, 1e9))."""
    from builtin_interfaces.msg import Time

    if isinstance(ns, (bool, np.bool_)) or not isinstance(ns, (int, np.integer)):
        raise TypeError(f"ns_to_time takes integer nanoseconds, got {type(ns).__name__} {ns!r}")
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)
