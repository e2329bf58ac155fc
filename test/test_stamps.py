"""glace_ros.stamps: the one stamp conversion (Time from rclpy or rosbags, rclpy Time, int ns, float s)."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.time import Time as RclpyTime

from glace_ros.bag_io import ns_to_rosbags_time, typestore
from glace_ros.stamps import ns_to_time, stamp_to_ns


def test_stamp_to_ns_accepts_every_stamp_form():
    assert stamp_to_ns(Time(sec=3, nanosec=7)) == 3_000_000_007
    assert stamp_to_ns(RclpyTime(seconds=2, nanoseconds=5)) == 2_000_000_005
    assert stamp_to_ns(5) == 5 and stamp_to_ns(np.int64(6)) == 6
    assert stamp_to_ns(1.5) == 1_500_000_000 and stamp_to_ns(np.float32(0.25)) == 250_000_000
    rosbags_time = ns_to_rosbags_time(typestore().types, 4_000_000_009)
    assert (rosbags_time.sec, rosbags_time.nanosec) == (4, 9) and stamp_to_ns(rosbags_time) == 4_000_000_009


def test_stamp_to_ns_rejects_what_is_not_a_stamp():
    with pytest.raises(TypeError, match="got str"):
        stamp_to_ns("now")
    with pytest.raises(TypeError, match="bool"):
        stamp_to_ns(True)
    with pytest.raises(ValueError, match="finite"):
        stamp_to_ns(float("nan"))

    class BadTime:  # a rosbags Time is not range-checked on construction
        sec, nanosec = 1, 1_000_000_000

    with pytest.raises(ValueError, match=r"nanosec must be in \[0, 1e9\)"):
        stamp_to_ns(BadTime())


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_234_567_890_123, -1])
def test_ns_to_time_round_trips(ns):
    t = ns_to_time(ns)
    assert isinstance(t, Time) and 0 <= t.nanosec < 1_000_000_000
    assert stamp_to_ns(t) == ns
    with pytest.raises(TypeError, match="integer nanoseconds"):
        ns_to_time(float(ns))
