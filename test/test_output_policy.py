"""glace_ros.output_policy: the quality gate and when /initialpose is sent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from glace_ros.output_policy import GateLimits, InitialPosePolicy, gate_cause


def _pose(x=0.0, yaw_deg=0.0):
    T = np.eye(4)
    a = math.radians(yaw_deg)
    T[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    T[0, 3] = x
    return T


COV = np.diag([0.01 ** 2] * 3 + [math.radians(0.5) ** 2] * 3).reshape(36)


@pytest.mark.parametrize("limits, kwargs, cause", [
    (GateLimits(min_inlier_count=100), dict(inlier_count=99), "few_inliers"),
    (GateLimits(min_inlier_ratio=0.2), dict(inlier_count=150, num_cells=1000), "low_inlier_ratio"),
    (GateLimits(max_position_stddev=0.005), {}, "uncertain"),
    (GateLimits(max_rotation_stddev=0.4), {}, "uncertain"),
    (GateLimits(max_jump_distance=0.5), dict(estimate=_pose(1.0), predicted=_pose(0.0)), "jump"),
    (GateLimits(max_jump_angle=5.0), dict(estimate=_pose(yaw_deg=10), predicted=_pose()), "jump"),
])
def test_each_cause_is_named(limits, kwargs, cause):
    args = dict(inlier_count=500, num_cells=1000, covariance=COV, estimate=_pose(), predicted=None)
    args.update(kwargs)
    got = gate_cause(args["inlier_count"], args["num_cells"], args["covariance"], limits, args["estimate"],
                     args["predicted"])
    assert got is not None and got[0] == cause and got[1]
    assert gate_cause(500, 1000, COV, GateLimits(), _pose(), _pose(100.0)) is None  # every limit off


def test_jump_check_is_skipped_without_a_prediction():
    assert gate_cause(500, 1000, COV, GateLimits(max_jump_distance=0.1), _pose(5.0), None) is None


def test_initialpose_modes():
    off = InitialPosePolicy("off", 0.5, 10)
    assert not off.should_send(_pose(), None)
    off.request()
    assert off.should_send(_pose(), None) and not off.should_send(_pose(), None)  # a request sends once
    once = InitialPosePolicy("once", 0.5, 10)
    assert [once.should_send(_pose(i), None) for i in range(3)] == [True, False, False]
    jump = InitialPosePolicy("on_jump", 0.5, 10)
    assert jump.should_send(_pose(), None)  # nothing predicts the pose yet: send once
    assert not jump.should_send(_pose(0.2), _pose(0.0))
    assert jump.should_send(_pose(0.8), _pose(0.0))
    assert jump.should_send(_pose(yaw_deg=15), _pose())
    with pytest.raises(ValueError, match="initialpose_mode"):
        InitialPosePolicy("always", 0.5, 10)
