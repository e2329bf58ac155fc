"""glace_core.dataset: DSAC*-layout reading (pairing, calibration, depth, features), errors, write_frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from glace_core.dataset import DatasetError, SceneSplit, load_global_features, write_frame
from glace_core.geometry import quaternion_to_rotation_matrix


def _pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation_matrix(rng.normal(size=4))
    T[:3, 3] = rng.normal(size=3)
    return T


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _raw_scene(root: Path, n: int = 3, h: int = 12, w: int = 16, split: str = "train",
               rgb_name="frame-{:06d}.color.png", pose_name="frame-{:06d}.pose.txt",
               calib_name="frame-{:06d}.calibration.txt", calib=lambda i: "100\n") -> Path:
    """A split written by hand, the way a DSAC* setup script does (np.savetxt poses, one focal)."""
    for sub in ("rgb", "poses", "calibration"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / split / "rgb" / rgb_name.format(i)), _rgb(h, w, i)[:, :, ::-1])
        np.savetxt(root / split / "poses" / pose_name.format(i), _pose(i))
        (root / split / "calibration" / calib_name.format(i)).write_text(calib(i))
    return root


def test_reads_poses_and_single_focal_calibration(tmp_path):
    root = _raw_scene(tmp_path / "scene", n=3, h=12, w=16)
    split = SceneSplit(root, "train")
    assert len(split) == 3 and split.names == [f"frame-{i:06d}.color.png" for i in range(3)]
    assert split.poses.shape == (3, 4, 4) and split.poses.dtype == np.float64
    for i in range(3):
        frame = split[i]
        np.testing.assert_allclose(frame.pose, _pose(i), atol=1e-15)
        np.testing.assert_array_equal(frame.K, [[100, 0, 8], [0, 100, 6], [0, 0, 1]])  # centre = (W/2, H/2)
        assert frame.index == i and frame.depth_path is None and Path(frame.rgb_path).name == frame.name
        np.testing.assert_array_equal(split.load_rgb(i), _rgb(12, 16, i))
        assert split.load_rgb(i).flags.writeable  # torch.from_numpy needs a writable array
    np.testing.assert_allclose(split.camera_centres, split.poses[:, :3, 3])
    assert split[-1].index == 2 and split.has_ground_truth and not split.has_depth
    with pytest.raises(IndexError):
        split[3]
    assert split.global_features() is None


def test_full_K_calibration(tmp_path):
    K = np.array([[120.0, 0, 7.5], [0, 110.0, 5.25], [0, 0, 1]])
    root = _raw_scene(tmp_path / "scene", n=2, calib=lambda i: "\n".join(" ".join(map(str, r)) for r in K) + "\n")
    np.testing.assert_array_equal(SceneSplit(root)[1].K, K)


def test_pairs_by_sorted_order_when_names_differ(tmp_path):
    root = _raw_scene(tmp_path / "scene", n=3, rgb_name="img{:02d}.jpg", pose_name="p_{:03d}.txt",
                      calib_name="c{}.txt")
    split = SceneSplit(root)
    for i in range(3):
        np.testing.assert_allclose(split[i].pose, _pose(i))
    assert split.load_rgb(0).shape == (12, 16, 3)  # jpeg decodes


def test_depth_and_features(tmp_path):
    root = _raw_scene(tmp_path / "scene", n=2, h=6, w=8)
    (root / "train" / "depth").mkdir()
    for i in range(2):
        mm = np.full((6, 8), 1500 + i, np.uint16)
        mm[0, 0] = 0
        cv2.imwrite(str(root / "train" / "depth" / f"frame-{i:06d}.depth.png"), mm)
    feats = np.random.default_rng(0).normal(size=(2, 256)).astype(np.float32)
    np.save(root / "train" / "features.npy", feats)
    split = SceneSplit(root)
    d = split.load_depth_m(1)
    assert d.dtype == np.float32 and d.shape == (6, 8) and d[0, 0] == 0 and d[1, 1] == pytest.approx(1.501)
    assert split[1].depth_path.endswith("frame-000001.depth.png")
    np.testing.assert_array_equal(split.global_features(), feats)
    np.save(root / "train" / "other.npy", feats[:1])
    with pytest.raises(DatasetError, match=r"other.npy: shape \(1, 256\), expected \(2, D\)"):
        split.global_features("other.npy")


def test_identity_poses_mean_no_ground_truth(tmp_path):
    root = tmp_path / "scene"
    for i in range(2):
        write_frame(root, "test", f"q{i}", _rgb(8, 8, i), np.eye(4), np.diag([10.0, 10.0, 1.0]))
    assert not SceneSplit(root, "test").has_ground_truth


def _expect(root: Path, match: str, split: str = "train"):
    with pytest.raises(DatasetError, match=match) as info:
        SceneSplit(root, split)
    return info.value


def test_dataset_errors_name_the_file(tmp_path):
    root = _raw_scene(tmp_path / "s", n=2)
    _expect(root, "split folder .*test does not exist", split="test")
    (root / "train" / "poses" / "frame-000001.pose.txt").unlink()
    err = _expect(root, r"poses: 1 files but 2 images")
    assert isinstance(err, ValueError)

    root = _raw_scene(tmp_path / "s2", n=2)
    (root / "train" / "poses" / "frame-000001.pose.txt").rename(root / "train" / "poses" / "frame-000007.pose.txt")
    _expect(root, "no file for image frame-000001.color.png")

    root = _raw_scene(tmp_path / "s3", n=2)
    (root / "train" / "poses" / "frame-000001.pose.txt").write_text("1 0 0\n0 1 0\n0 0 1\n")
    _expect(root, r"frame-000001.pose.txt: expected 4 rows of 4 numbers")
    (root / "train" / "poses" / "frame-000001.pose.txt").write_text("a b c d\n" * 4)
    _expect(root, r"frame-000001.pose.txt: cannot read")
    bad = np.eye(4)
    bad[0, 3] = np.inf
    np.savetxt(root / "train" / "poses" / "frame-000001.pose.txt", bad)
    _expect(root, r"frame-000001.pose.txt: pose contains NaN or infinite")
    np.savetxt(root / "train" / "poses" / "frame-000001.pose.txt", np.diag([1.0, 1.0, 0.0, 1.0]))
    _expect(root, r"frame-000001.pose.txt: rotation is not orthonormal")

    root = _raw_scene(tmp_path / "s4", n=2)
    calib = root / "train" / "calibration" / "frame-000000.calibration.txt"
    calib.write_text("100 200\n")
    _expect(root, r"frame-000000.calibration.txt: expected 1 focal length or a 3×3 K")
    calib.write_text("-5\n")
    _expect(root, r"frame-000000.calibration.txt: focal length must be a positive")
    calib.write_text("0 0 1\n0 100 1\n0 0 1\n")
    _expect(root, r"frame-000000.calibration.txt: K must have positive focal lengths, got fx=0.0")
    calib.write_text("f\n")
    _expect(root, r"frame-000000.calibration.txt: cannot read numbers")

    root = _raw_scene(tmp_path / "s5", n=2)
    (root / "train" / "depth").mkdir()
    cv2.imwrite(str(root / "train" / "depth" / "frame-000000.depth.png"), np.zeros((12, 16), np.uint16))
    _expect(root, r"depth: 1 files but 2 images")

    root = _raw_scene(tmp_path / "s6", n=1)
    for f in (root / "train" / "rgb").iterdir():
        f.unlink()
    _expect(root, "no images")
    (root / "train" / "calibration").rename(root / "train" / "calib")
    _expect(root, "missing folder .*calibration")


def test_write_frame_round_trip(tmp_path):
    root = tmp_path / "scene"
    K = np.array([[30.5, 0, 12.25], [0, 31.0, 8.0], [0, 0, 1]])
    depth = np.random.default_rng(0).uniform(0.2, 6.0, size=(16, 24))
    depth[0, 0] = np.nan
    depth[0, 1] = 80.0  # beyond uint16 millimetres: invalid
    for i in range(3):
        write_frame(root, "train", f"frame-{i:06d}", _rgb(16, 24, i), _pose(i), K, depth_m=depth)
    split = SceneSplit(root, "train")
    assert len(split) == 3 and split.has_depth
    for i in range(3):
        np.testing.assert_array_equal(split.load_rgb(i), _rgb(16, 24, i))
        np.testing.assert_array_equal(split[i].pose, _pose(i))  # round-trip precision
        np.testing.assert_array_equal(split[i].K, K)
    d = split.load_depth_m(0)
    np.testing.assert_allclose(d[1:], np.round(depth[1:] * 1000) / 1000, atol=1e-6)
    assert d[0, 0] == 0 and d[0, 1] == 0
    assert not list(root.rglob("*.tmp"))
    write_frame(root, "test", "gray", _rgb(16, 24, 0)[:, :, 0], np.eye(4), K)
    assert SceneSplit(root, "test").load_rgb(0).shape == (16, 24, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "a/b"}, "frame name"), ({"name": ""}, "frame name"), ({"split": "val"}, "split must be"),
    ({"rgb": np.zeros((4, 4, 3), np.float32)}, "uint8"), ({"pose": np.diag([1.0, 1, 1, 2])}, "last row"),
    ({"K": np.eye(4)}, "K of frame"), ({"depth_m": np.ones((3, 3))}, "depth of frame"),
])
def test_write_frame_rejects_bad_input(tmp_path, kwargs, match):
    args = {"name": "f", "split": "train", "rgb": np.zeros((4, 4, 3), np.uint8), "pose": np.eye(4),
            "K": np.diag([5.0, 5.0, 1.0]), "depth_m": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        write_frame(tmp_path, args["split"], args["name"], args["rgb"], args["pose"], args["K"], args["depth_m"])
    assert not (tmp_path / "train" / "rgb").exists()  # nothing written


class _Frames:
    """A dataset with the SceneSplit interface that is not a folder (as a bag reader hands over)."""

    def __init__(self, n: int, feats, named: bool):
        self.n, self.feats = n, feats
        if named:
            self.global_features = lambda feat_name: None if feat_name == "none.npy" else self.feats
        else:
            self.global_features = lambda: self.feats

    def __len__(self) -> int:
        return self.n


def test_load_global_features_of_a_scene_split(tmp_path):
    root = _raw_scene(tmp_path / "scene", n=2)
    split = SceneSplit(root)
    assert load_global_features(split, "features.npy") is None
    feats = np.random.default_rng(1).normal(size=(2, 8))  # float64 on disk: returned as float32
    np.save(root / "train" / "features.npy", feats)
    got = load_global_features(split, "features.npy")
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, feats.astype(np.float32))
    np.testing.assert_array_equal(split.global_features(), got)  # one implementation behind both
    feats[1, 3] = np.inf
    np.save(root / "train" / "bad.npy", feats)
    with pytest.raises(DatasetError, match=r"bad.npy: contain NaN or infinite values"):
        load_global_features(split, "bad.npy")
    (root / "train" / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(DatasetError, match=r"broken.npy: cannot load"):
        load_global_features(split, "broken.npy")


def test_load_global_features_of_other_datasets():
    feats = np.ones((3, 4), np.float64)
    plain = _Frames(3, feats, named=False)
    assert load_global_features(plain, "features.npy").dtype == np.float32
    with pytest.raises(DatasetError, match="other.npy: this _Frames only provides features.npy"):
        load_global_features(plain, "other.npy")
    named = _Frames(3, feats, named=True)
    assert load_global_features(named, "other.npy").shape == (3, 4)
    assert load_global_features(named, "none.npy") is None
    assert load_global_features(_Frames(3, None, named=False), "features.npy") is None
    assert load_global_features([1, 2], "features.npy") is None  # a dataset without global features
    with pytest.raises(DatasetError, match=r"shape \(2, 4\), expected \(3, D\)"):
        load_global_features(_Frames(3, feats[:2], named=False), "features.npy")
