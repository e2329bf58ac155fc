"""glace_ros.camera_info: CameraInfo -> K (the +0.5 convention, roi, binning), validation, the cache."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo

from glace_ros.camera_info import (
    CameraInfoCache, CameraInfoError, camera_info_image_size, check_image_matches, has_distortion,
    intrinsics_for_image, intrinsics_from_camera_info)


def _info(fx=500.0, fy=510.0, cx=319.5, cy=239.5, width=640, height=480, frame="cam", stamp_s=0.0, **kw):
    msg = CameraInfo()
    msg.header.frame_id = frame
    ns = int(round(stamp_s * 1e9))
    msg.header.stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    msg.width, msg.height = width, height
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    for key, value in kw.items():
        setattr(msg, key, value)
    return msg


def test_full_intrinsics_and_half_pixel_shift():
    K = intrinsics_from_camera_info(_info(fx=500.0, fy=510.0, cx=319.5, cy=239.5))
    assert K.dtype == np.float64 and K.shape == (3, 3)
    # ROS centre (319.5, 239.5) of a 640x480 image is its exact middle: (320, 240) with corner origin
    np.testing.assert_array_equal(K, [[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    # ROS pixel (0, 0) is the centre of the top-left pixel, our (0.5, 0.5)
    K0 = intrinsics_from_camera_info(_info(cx=0.0, cy=0.0))
    assert (K0[0, 2], K0[1, 2]) == (0.5, 0.5)


def test_falls_back_to_p_when_k_is_zero():
    msg = _info(fx=400.0, fy=401.0, cx=100.0, cy=50.0)
    msg.k = [0.0] * 9
    K = intrinsics_from_camera_info(msg)
    np.testing.assert_array_equal(K[:2], [[400.0, 0.0, 100.5], [0.0, 401.0, 50.5]])


@pytest.mark.parametrize("change, match", [
    (dict(fx=0.0), "fx = 0.0"), (dict(fy=-3.0), "fy = -3.0"), (dict(fx=float("nan")), "fx = nan"),
    (dict(cx=float("inf")), "cx = inf"), (dict(width=0), "width/height must be positive, got 0x480"),
    (dict(height=0), "got 640x0"),
])
def test_invalid_camera_info_raises_naming_the_field(change, match):
    with pytest.raises(CameraInfoError, match=match):
        intrinsics_from_camera_info(_info(**change))
    assert issubclass(CameraInfoError, ValueError)


def test_all_zero_k_and_p_is_rejected():
    msg = _info()
    msg.k, msg.p = [0.0] * 9, [0.0] * 12
    with pytest.raises(CameraInfoError, match=r"fx = 0.0 \(from p\)"):
        intrinsics_from_camera_info(msg)


def _roi(x, y, w, h):
    msg = CameraInfo().roi
    msg.x_offset, msg.y_offset, msg.width, msg.height = x, y, w, h
    return msg


def test_roi_crop_subtracts_offsets_and_sets_the_size():
    msg = _info(cx=319.5, cy=239.5, roi=_roi(100, 40, 320, 200))
    K = intrinsics_from_camera_info(msg)
    assert (K[0, 2], K[1, 2]) == (320.0 - 100, 240.0 - 40)
    assert (K[0, 0], K[1, 1]) == (500.0, 510.0)
    assert camera_info_image_size(msg) == (200, 320)


def test_binning_halves_focal_and_principal_point_in_corner_convention():
    # ROS cx = 0.5 is the boundary between full-res pixels 0 and 1 = the centre of binned pixel 0,
    # i.e. binned ROS cx 0, ours 0.5.
    msg = _info(cx=0.5, cy=2.5, binning_x=2, binning_y=3)
    K = intrinsics_from_camera_info(msg)
    assert K[0, 2] == pytest.approx(0.5)
    assert K[1, 2] == pytest.approx(1.0)  # ROS y 2.5: between full rows 2|3 = between binned rows 0|1
    assert (K[0, 0], K[1, 1]) == (250.0, 170.0)
    assert camera_info_image_size(msg) == (160, 320)


def test_roi_then_binning_projects_consistently():
    msg = _info(fx=600.0, fy=600.0, cx=310.2, cy=250.7, roi=_roi(64, 32, 512, 384), binning_x=2, binning_y=2)
    K = intrinsics_from_camera_info(msg)
    K_full = intrinsics_from_camera_info(_info(fx=600.0, fy=600.0, cx=310.2, cy=250.7))
    point = np.array([0.3, -0.2, 2.0])
    uv_full = (K_full @ point)[:2] / point[2]  # corner coordinates in the full sensor image
    uv = (K @ point)[:2] / point[2]
    np.testing.assert_allclose(uv, (uv_full - [64, 32]) / 2, atol=1e-12)
    assert camera_info_image_size(msg) == (192, 256)


@pytest.mark.parametrize("roi", [(600, 0, 100, 100), (0, 0, 0, 100), (10, 10, 0, 0)])
def test_bad_roi_is_rejected(roi):
    with pytest.raises(CameraInfoError, match="roi"):
        intrinsics_from_camera_info(_info(roi=_roi(*roi)))


def test_image_size_check():
    msg = _info(binning_x=2, binning_y=2)
    check_image_matches(camera_info_image_size(msg), (240, 320))
    expected = r"image is 640x480 \(WxH\) but its CameraInfo \('cam'\) describes 320x240"
    with pytest.raises(CameraInfoError, match=expected):
        intrinsics_for_image(msg, (480, 640))
    np.testing.assert_array_equal(intrinsics_for_image(msg, (240, 320, 3)), intrinsics_from_camera_info(msg))


def test_has_distortion():
    msg = _info()
    assert not has_distortion(msg)
    msg.d = [0.0] * 5
    assert not has_distortion(msg)
    msg.d = [0.1, 0.0, 0.0, 0.0, 0.0]
    assert has_distortion(msg)


def test_cache_matches_by_stamp_and_falls_back_to_latest():
    cache = CameraInfoCache(tolerance_s=0.05)
    for t, fx in [(1.0, 100.0), (1.1, 110.0), (2.0, 200.0)]:
        cache.add(_info(fx=fx, stamp_s=t))
    near = cache.match(Time(sec=1, nanosec=120_000_000), "cam")
    assert near.exact and near.msg.k[0] == 110.0 and near.dt_s == pytest.approx(-0.02)
    assert cache.lookup(1.0, "cam").k[0] == 100.0
    # 1.5 is 0.4 s from the nearest: no stamp match, so the latest received (t = 2.0), not the nearest
    far = cache.match(1.5, "cam")
    assert not far.exact and far.msg.k[0] == 200.0
    assert cache.lookup(0.0, "cam").k[0] == 200.0
    assert cache.lookup(1.0, "other_camera") is None


def test_cache_memory_is_bounded():
    cache = CameraInfoCache(max_entries=3, max_frames=2)
    for i in range(10):
        cache.add(_info(fx=100.0 + i, stamp_s=float(i)))
    assert len(cache) == 3
    assert cache.lookup(0.0, "cam").k[0] == 109.0  # t = 0 dropped: falls back to the latest
    cache.add(_info(frame="b"))
    cache.add(_info(frame="c"))  # a third frame evicts the least recently updated ("cam")
    assert cache.lookup(0.0, "cam") is None and cache.lookup(0.0, "c") is not None
    with pytest.raises(ValueError, match="tolerance_s"):
        CameraInfoCache(tolerance_s=-1.0)
