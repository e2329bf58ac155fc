"""rosbag2 reading/writing (both storages), rclpy interop, damaged bags, pose interpolation."""
import os
from pathlib import Path

import numpy as np
import pytest

from glace_core.pose_interpolation import interpolate_poses
from glace_ros import scene_to_bag as s2b
from glace_ros.bag_io import BagError, BagReader, BagWriter


def _write_small_bag(path, storage, n=5):
    with BagWriter(path, storage=storage) as bag:
        types = bag.types
        for i in range(n):
            stamp = 1_000_000_000 + i * 100_000_000
            header = s2b._header(types, stamp, "cam")
            rgb = np.full((6, 7, 3), i, np.uint8)
            rgb[0, 0] = (10, 20, 30)
            bag.write("/img", s2b.image_message(types, header, rgb), "sensor_msgs/msg/Image", stamp)
            K = np.array([[500.0, 0, 3.5], [0, 400.0, 3.0], [0, 0, 1]])
            bag.write("/info", s2b.camera_info_message(types, header, K, 6, 7), "sensor_msgs/msg/CameraInfo", stamp)
            pose = np.eye(4)
            pose[:3, 3] = (i, 2 * i, 3)
            bag.write("/tf", s2b.tf_message(types, header, "child", pose), "tf2_msgs/msg/TFMessage", stamp)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_and_rclpy_interop(tmp_path, storage):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    path = tmp_path / "bag"
    _write_small_bag(path, storage)
    assert not (tmp_path / ".bag.partial").exists()
    with BagReader(path) as bag:
        assert bag.topics == {"/img": "sensor_msgs/msg/Image", "/info": "sensor_msgs/msg/CameraInfo",
                              "/tf": "tf2_msgs/msg/TFMessage"}
        assert bag.message_count == 15
        msgs = list(bag.messages(["/img", "/info", "/tf"]))
        stamps = [m.timestamp_ns for m in msgs]
        assert stamps == sorted(stamps)
        last = {m.topic: m for m in msgs}
        img = deserialize_message(last["/img"].data, Image)
        assert (img.height, img.width, img.encoding, img.step) == (6, 7, "rgb8", 21)
        arr = np.frombuffer(bytes(img.data), np.uint8).reshape(6, 7, 3)
        assert tuple(arr[0, 0]) == (10, 20, 30) and arr[1, 1, 0] == 4
        info = deserialize_message(last["/info"].data, CameraInfo)
        # our convention (pixel centres at i+0.5) → ROS convention (centres at integers)
        assert info.k[0] == 500.0 and info.k[4] == 400.0 and info.k[2] == 3.0 and info.k[5] == 2.5
        tf = deserialize_message(last["/tf"].data, TFMessage)
        assert tf.transforms[0].child_frame_id == "child"
        assert tf.transforms[0].transform.translation.y == 8.0
        decoded = bag.deserialize(last["/img"])
        assert decoded.header.stamp.sec == 1 and decoded.header.stamp.nanosec == 400_000_000


def test_rclpy_bytes_decode_with_rosbags(tmp_path):
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import serialize_message

    msg = PoseStamped()
    msg.header.frame_id = "map"
    msg.pose.position.x = 1.25
    msg.pose.orientation.w = 1.0
    path = tmp_path / "b"
    with BagWriter(path, storage="mcap") as bag:
        bag.write_raw("/pose", serialize_message(msg), "geometry_msgs/msg/PoseStamped", 5)
    with BagReader(path) as bag:
        (m,) = list(bag.messages())
        decoded = bag.deserialize(m)
    assert decoded.header.frame_id == "map" and decoded.pose.position.x == 1.25


def test_writer_refuses_existing_output_and_cleans_up_on_error(tmp_path):
    path = tmp_path / "bag"
    _write_small_bag(path, "mcap", n=1)
    with pytest.raises(BagError, match="already exists"):
        BagWriter(path)
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path / "other", storage="sqlite3") as bag:
            _ = bag.types
            raise RuntimeError("interrupted")
    assert not (tmp_path / "other").exists() and not (tmp_path / ".other.partial").exists()
    with pytest.raises(BagError, match="unknown bag storage"):
        BagWriter(tmp_path / "x", storage="rosbag1")


def _data_file(path: Path) -> Path:
    (f,) = [p for p in path.iterdir() if p.suffix in (".mcap", ".db3")]
    assert f.stem == path.name  # named after the bag, not after the temporary folder
    return f


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_damaged_bags_raise_bag_error(tmp_path, storage):
    path = tmp_path / "bag"
    _write_small_bag(path, storage, n=20)
    data = _data_file(path)
    raw = data.read_bytes()
    # truncated storage file
    data.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BagError, match=str(path)):
        with BagReader(path) as bag:
            for m in bag.messages():
                bag.deserialize(m)
    # garbage storage file
    data.write_bytes(os.urandom(len(raw)))
    with pytest.raises(BagError, match=str(path)):
        with BagReader(path) as bag:
            list(bag.messages())
    # missing metadata
    data.write_bytes(raw)
    (path / "metadata.yaml").write_text("::: not yaml {")
    with pytest.raises(BagError, match=str(path)):
        BagReader(path).__enter__()
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "nope")


def test_missing_topic_lists_available(tmp_path):
    path = tmp_path / "bag"
    _write_small_bag(path, "mcap", n=1)
    with BagReader(path) as bag:
        with pytest.raises(BagError, match=r"no topic /camera.*/img \(sensor_msgs/msg/Image\)"):
            bag.require_topics(["/camera"])


def _rz(deg, t):
    a = np.deg2rad(deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    T[:3, 3] = t
    return T


def test_interpolate_poses_midpoint_and_bounds():
    stamps = np.array([0, 100, 200], dtype=np.int64)
    poses = np.stack([_rz(0, (0, 0, 0)), _rz(90, (1, 0, 0)), _rz(170, (1, 2, 0))])
    out, ok = interpolate_poses(stamps, poses, np.array([-1, 0, 50, 150, 200, 201]))
    assert ok.tolist() == [False, True, True, True, True, False]
    np.testing.assert_allclose(out[2], _rz(45, (0.5, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(out[3], _rz(130, (1, 1, 0)), atol=1e-12)
    np.testing.assert_allclose(out[1], poses[0])
    assert np.isnan(out[0]).all()
    _, ok = interpolate_poses(stamps, poses, np.array([50, 150]), max_gap_ns=99)
    assert not ok.any()


def test_interpolation_takes_short_arc_and_handles_duplicates():
    # 350° about z is -10°: the midpoint is -5°, not 175°
    stamps = np.array([0, 100, 100], dtype=np.int64)
    poses = np.stack([_rz(0, (0, 0, 0)), _rz(123, (9, 9, 9)), _rz(350, (2, 0, 0))])
    out, ok = interpolate_poses(stamps, poses, np.array([50, 100]))
    assert ok.all()
    np.testing.assert_allclose(out[0], _rz(-5, (1, 0, 0)), atol=1e-12)
    np.testing.assert_allclose(out[1], poses[2])  # duplicate stamps keep the last pose
    with pytest.raises(ValueError, match=r"\(M, 4, 4\)"):
        interpolate_poses(stamps, poses[:2], np.array([1]))
