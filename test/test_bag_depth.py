"""Depth in bags: glace-scene-to-bag --depth-topic writes a scene's depth as 16UC1 Images, and
bag_to_scene (glace-train --bag --depth-topic) pairs depth messages with images by stamp and writes
them as the scene's depth/ for --use_depth."""
from __future__ import annotations

import numpy as np
import pytest

from glace_ros import scene_to_bag as s2b
from glace_ros.bag_io import BagError, BagWriter
from glace_ros.bag_to_scene import BagSource, bag_to_scene
from glace_ros.image_conversion import ImageConversionError, to_depth_m
from tf_fixtures import pose as _pose
from training_fixtures import small_scene

K = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])


def _float_depth(types, header, depth_m: np.ndarray):
    h, w = depth_m.shape
    data = np.ascontiguousarray(depth_m, dtype="<f4").tobytes()
    return types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="32FC1", is_bigendian=0,
                                          step=4 * w, data=np.frombuffer(data, dtype=np.uint8))


def test_depth_messages_in_metres():
    class Msg:  # duck-typed sensor_msgs/Image
        def __init__(self, array, encoding):
            self.height, self.width = array.shape[:2]
            self.encoding, self.is_bigendian = encoding, 0
            self.step = array.strides[0]
            self.data = array.tobytes()

    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    np.testing.assert_allclose(to_depth_m(Msg(mm, "16UC1")), [[0, 1.5], [65.535, 0.25]], rtol=1e-6)
    metres = np.array([[np.nan, 2.0], [-1.0, np.inf]], np.float32)
    np.testing.assert_array_equal(to_depth_m(Msg(metres, "32FC1")), [[0, 2.0], [0, 0]])
    with pytest.raises(ImageConversionError, match="expected 16UC1"):
        to_depth_m(Msg(np.zeros((2, 2, 3), np.uint8), "rgb8"))


def test_a_scene_with_depth_round_trips_through_a_bag(tmp_path):
    from glace_core.dataset import SceneSplit

    scene = small_scene(tmp_path / "scene", seed=4, n_train=2, n_test=3)
    bag = tmp_path / "bag"
    assert s2b.main([str(scene), str(bag), "--split", "test", "--depth-topic", "/camera/depth"]) == 0
    source = BagSource(pose_topic="/ground_truth/pose", depth_topic="/camera/depth")
    result = bag_to_scene(bag, tmp_path / "back", source)
    assert (result.written, result.with_depth) == (3, 3)
    original, back = SceneSplit(scene, "test"), SceneSplit(tmp_path / "back", "train")
    assert back.has_depth
    for i in range(3):
        assert (original.load_depth_m(i) > 0).any()
        np.testing.assert_allclose(back.load_depth_m(i), original.load_depth_m(i), atol=1e-6)  # mm exact
        np.testing.assert_array_equal(back.load_rgb(i), original.load_rgb(i))
    with pytest.raises(ValueError, match="has no depth/ folder"):
        s2b.scene_to_bag(_without_depth(tmp_path), tmp_path / "bag2", s2b.SceneToBagOptions(depth_topic="/d"))


def _without_depth(tmp_path):
    from glace_core.dataset import write_frame

    root = tmp_path / "plain"
    write_frame(root, "test", "f0", np.zeros((24, 32, 3), np.uint8), np.eye(4), K)
    return root


@pytest.mark.parametrize("depth_first, every_nth", [(False, 1), (True, 1), (True, 2)])
def test_depth_pairs_with_images_by_stamp(tmp_path, depth_first, every_nth):
    """Depth k is k+1 metres. Exact stamps, 5 ms off, 50 ms off (beyond the 20 ms tolerance: no
    depth, an all-zero file), a missing one, and depth recorded before or after its image; with
    every_nth 2 the kept images 0, 2, 4 still get their own depth."""
    offsets_ms = {0: 0, 1: 5, 2: 50, 4: -5}  # image 3 has no depth message
    with BagWriter(tmp_path / "bag", storage="sqlite3") as bag:
        types = bag.types
        for k in range(5):
            t = 1_000_000_000 + k * 100_000_000
            header = s2b._header(types, t, "cam")
            image = s2b.image_message(types, header, np.full((24, 32, 3), 10 * k, np.uint8))
            depth = None
            if k in offsets_ms:
                td = t + offsets_ms[k] * 1_000_000
                depth = _float_depth(types, s2b._header(types, td, "cam"), np.full((24, 32), k + 1.0, np.float32))
            writes = [("/img", image, t)] + ([("/depth", depth, t)] if depth is not None else [])
            for topic, msg, log_t in (writes[::-1] if depth_first else writes):
                bag.write(topic, msg, "sensor_msgs/msg/Image", log_t)
            bag.write("/info", s2b.camera_info_message(types, header, K, 24, 32), "sensor_msgs/msg/CameraInfo", t)
            bag.write("/slam", types["geometry_msgs/msg/PoseStamped"](
                header=s2b._header(types, t, "map"), pose=s2b.pose_message(types, _pose([0, 0, 0], [0.1 * k, 0, 0]))),
                "geometry_msgs/msg/PoseStamped", t)
    from glace_core.dataset import SceneSplit

    result = bag_to_scene(tmp_path / "bag", tmp_path / "scene",
                          BagSource(pose_topic="/slam", depth_topic="/depth", every_nth=every_nth))
    split = SceneSplit(tmp_path / "scene", "train")
    kept = list(range(0, 5, every_nth))
    with_depth = [k for k in kept if k in (0, 1, 4)]
    assert (result.images, result.written, len(split)) == (len(kept),) * 3
    assert result.with_depth == len(with_depth)
    for i, k in enumerate(kept):
        assert int(split.load_rgb(i)[0, 0, 0]) == 10 * k
        depth = split.load_depth_m(i)
        assert depth.shape == (24, 32)
        np.testing.assert_allclose(depth, k + 1.0 if k in with_depth else 0.0)


def test_depth_of_another_size_is_refused(tmp_path):
    with BagWriter(tmp_path / "bag", storage="sqlite3") as bag:
        types = bag.types
        header = s2b._header(types, 1_000_000_000, "cam")
        bag.write("/img", s2b.image_message(types, header, np.zeros((24, 32, 3), np.uint8)), "sensor_msgs/msg/Image",
                  1_000_000_000)
        bag.write("/depth", _float_depth(types, header, np.ones((12, 16), np.float32)), "sensor_msgs/msg/Image",
                  1_000_000_000)
        bag.write("/info", s2b.camera_info_message(types, header, K, 24, 32), "sensor_msgs/msg/CameraInfo",
                  1_000_000_000)
        for t in (900_000_000, 1_100_000_000):
            bag.write("/slam", types["geometry_msgs/msg/PoseStamped"](
                header=s2b._header(types, t, "map"), pose=s2b.pose_message(types, _pose([0, 0, 0], [0, 0, 0]))),
                "geometry_msgs/msg/PoseStamped", t)
    with pytest.raises(BagError, match="must be registered to the image"):
        bag_to_scene(tmp_path / "bag", tmp_path / "scene", BagSource(pose_topic="/slam", depth_topic="/depth"))
    with pytest.raises(BagError, match="/nope"):
        bag_to_scene(tmp_path / "bag", tmp_path / "scene2",
                     BagSource(pose_topic="/slam", image_topic="/img", depth_topic="/nope"))


def test_glace_train_bag_depth_topic_gives_training_a_scene_with_depth(tmp_path, capsys):
    """glace-train --bag --depth-topic: the scene handed to training has depth/ (read back equal),
    and --depth-topic without --bag is refused."""
    from glace_core.dataset import SceneSplit
    from glace_ros.train_from_bag import train_main_with_bag

    scene = small_scene(tmp_path / "scene", seed=4, n_train=2, n_test=2)
    bag = tmp_path / "bag"
    assert s2b.main([str(scene), str(bag), "--split", "test", "--depth-topic", "/camera/depth"]) == 0
    seen = {}

    def inspect(argv):
        split = SceneSplit(argv[0], "train")
        seen["depth"] = [split.load_depth_m(i) for i in range(len(split))]
        seen["rest"] = argv[1:]
        return 0

    argv = ["--bag", str(bag), "--pose-topic", "/ground_truth/pose", "--image-topic", "/camera/image_raw",
            "--depth-topic", "/camera/depth", str(tmp_path / "m.pt"), "--use_depth", "on"]
    assert train_main_with_bag(argv, inspect) == 0
    original = SceneSplit(scene, "test")
    assert len(seen["depth"]) == 2 and seen["rest"] == [str(tmp_path / "m.pt"), "--use_depth", "on"]
    for i, depth in enumerate(seen["depth"]):
        np.testing.assert_allclose(depth, original.load_depth_m(i), atol=1e-6)
    assert train_main_with_bag(["scene", "m.pt", "--depth-topic", "/d"], inspect) == 2
    assert "--depth-topic only apply with --bag" in capsys.readouterr().err
