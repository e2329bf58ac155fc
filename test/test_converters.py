"""Dataset converters: small fixtures in each raw release layout, converted and read back with SceneSplit."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from glace_core.cli.convert_dataset import main
from glace_core.converters.common import register_depth
from glace_core.dataset import SceneSplit
from glace_core.geometry import invert_pose, quaternion_to_rotation_matrix, rotation_matrix_to_quaternion


def _pose(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = np.eye(4)
    T[:3, :3] = quaternion_to_rotation_matrix(rng.normal(size=4))
    T[:3, 3] = rng.normal(size=3)
    return T


def _image(path: Path, h: int, w: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    img[: h // 2, : w // 3] = 255 - value
    cv2.imwrite(str(path), img)


def _q_t(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera quaternion (wxyz) and translation of a camera-to-world pose."""
    w2c = invert_pose(c2w)
    return rotation_matrix_to_quaternion(w2c[:3, :3]), w2c[:3, 3]


def _nvm(path: Path, cameras: dict[str, tuple[float, np.ndarray]]) -> None:
    lines = ["NVM_V3", "", str(len(cameras))]
    for name, (focal, c2w) in cameras.items():
        q, _ = _q_t(c2w)
        lines.append(f"{name} {focal!r} " + " ".join(repr(float(v)) for v in (*q, *c2w[:3, 3])) + " 0.01 0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines + ["", "0", ""]))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


# --------------------------------------------------------------------------- 7-Scenes

def _seven_scenes(raw: Path) -> Path:
    scene = raw / "chess"
    scene.mkdir(parents=True)
    (scene / "TrainSplit.txt").write_text("sequence1\nsequence3\n")
    (scene / "TestSplit.txt").write_text("sequence2\n")
    index = 0
    for seq, n in (("seq-01", 2), ("seq-02", 1), ("seq-03", 1)):
        for f in range(n):
            stem = scene / seq / f"frame-{f:06d}"
            _image(Path(f"{stem}.color.png"), 480, 640, 40 * index)
            np.savetxt(f"{stem}.pose.txt", _pose(index), fmt="%.7e", delimiter="\t")
            depth = np.full((480, 640), 1000 + index, np.uint16)
            depth[240, 330] = 65535  # invalid in the raw maps
            cv2.imwrite(f"{stem}.depth.png", depth)
            index += 1
    return raw


def test_seven_scenes(tmp_path):
    raw = _seven_scenes(tmp_path / "raw")
    assert main(["7scenes", str(raw), str(tmp_path / "out")]) == 0
    train = SceneSplit(tmp_path / "out" / "7scenes_chess", "train")
    test = SceneSplit(tmp_path / "out" / "7scenes_chess", "test")
    assert train.names == ["seq-01-frame-000000.color.png", "seq-01-frame-000001.color.png",
                           "seq-03-frame-000000.color.png"]
    assert test.names == ["seq-02-frame-000000.color.png"]
    np.testing.assert_allclose(train.poses, np.stack([_pose(0), _pose(1), _pose(3)]), atol=1e-6)
    np.testing.assert_allclose(test[0].pose, _pose(2), atol=1e-6)
    np.testing.assert_array_equal(train[0].K, [[525, 0, 320], [0, 525, 240], [0, 0, 1]])
    assert (tmp_path / "out/7scenes_chess/train/calibration/seq-01-frame-000000.calibration.txt").read_text().split() \
        == ["525"]
    raw_rgb = cv2.imread(str(raw / "chess/seq-01/frame-000001.color.png"))[:, :, ::-1]
    np.testing.assert_array_equal(train.load_rgb(1), raw_rgb)
    depth = test.load_depth_m(0)
    assert depth.shape == (480, 640)
    assert depth[240, 320] == pytest.approx(1.002) and depth[0, 0] == 0  # image corner: outside the depth view
    # depth pixel 330 (invalid) is seen by the RGB pixel whose centre maps into it
    u_rgb = int((330 + 0.5 - 320) * 525 / 585 + 320)
    assert depth[240, u_rgb] == 0


def test_register_depth_identity_extrinsic():
    K_d = np.array([[585.0, 0, 320], [0, 585.0, 240], [0, 0, 1]])
    K_c = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
    raw = np.arange(480 * 640, dtype=np.uint32).reshape(480, 640) % 60000 + 1
    out = register_depth(raw.astype(np.uint16), K_d, K_c, (480, 640))
    for v, u in ((240, 320), (100, 500), (470, 30)):
        x = (u + 0.5 - 320) * 585 / 525 + 320
        y = (v + 0.5 - 240) * 585 / 525 + 240
        inside = 0 <= x < 640 and 0 <= y < 480
        assert out[v, u] == (raw[int(np.floor(y)), int(np.floor(x))] if inside else 0)
    same = register_depth(raw.astype(np.uint16), K_c, K_c, (480, 640))
    np.testing.assert_array_equal(same, raw)


def test_seven_scenes_pgt_and_depth_options(tmp_path):
    raw = _seven_scenes(tmp_path / "raw")
    pgt = tmp_path / "pgt"
    pgt.mkdir()
    sfm = {0: _pose(10), 3: _pose(13)}  # frame 1 of seq-01 has no pGT pose: skipped
    names = {0: "seq-01/frame-000000.color.png", 3: "seq-03/frame-000000.color.png"}
    lines = []
    for i, T in sfm.items():
        q, t = _q_t(T)
        lines.append(f"{names[i]} " + " ".join(f"{v:.12f}" for v in (*q, *t)) + " 530.5")
    (pgt / "chess_train.txt").write_text("\n".join(lines[::-1]) + "\n")
    q, t = _q_t(_pose(12))
    line = "seq-02/frame-000000.color.png " + " ".join(f"{v:.12f}" for v in (*q, *t))
    (pgt / "chess_test.txt").write_text(line + "\n")
    assert main(["7scenes", str(raw), str(tmp_path / "out"), "--scene", "chess", "--pgt", str(pgt),
                 "--depth", "none"]) == 0
    train = SceneSplit(tmp_path / "out" / "7scenes_chess", "train")
    assert len(train) == 2 and not train.has_depth
    np.testing.assert_allclose(train.poses, np.stack([sfm[0], sfm[3]]), atol=1e-9)
    assert train[0].K[0, 0] == 530.5 and train[0].K[0, 2] == 320
    test = SceneSplit(tmp_path / "out" / "7scenes_chess", "test")
    np.testing.assert_allclose(test[0].pose, _pose(12), atol=1e-9)
    assert test[0].K[0, 0] == 525  # no focal in the list: the dataset's


# --------------------------------------------------------------------------- 12-Scenes

def test_twelve_scenes(tmp_path):
    scene = tmp_path / "raw" / "apt1" / "kitchen"
    (scene / "data").mkdir(parents=True)
    (scene / "split.txt").write_text("sequence0 [frames=2]  [start=0 ; end=1]\n"
                                     "sequence1 [frames=3]  [start=2 ; end=4]\n")
    (scene / "info.txt").write_text(
        "m_versionNumber = 4\nm_colorWidth = 1296\nm_colorHeight = 968\n"
        "m_calibrationColorIntrinsic = 1170.19 0 647.75 0 0 1170.19 483.75 0 0 0 1 0 0 0 0 1 \n"
        "m_calibrationDepthIntrinsic = 572 0 320 0 0 572 240 0 0 0 1 0 0 0 0 1\n")
    for i in range(5):
        _image(scene / "data" / f"frame-{i:06d}.color.jpg", 242, 324, 30 * i)  # a quarter of 1296×968
        pose = _pose(i) if i != 3 else np.full((4, 4), -np.inf)  # a tracking failure
        np.savetxt(scene / "data" / f"frame-{i:06d}.pose.txt", pose)
    assert main(["12scenes", str(tmp_path / "raw"), str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "12scenes_apt1_kitchen"
    test, train = SceneSplit(out, "test"), SceneSplit(out, "train")
    assert test.names == ["frame-000000.color.jpg", "frame-000001.color.jpg"]
    assert train.names == ["frame-000002.color.jpg", "frame-000004.color.jpg"]
    np.testing.assert_allclose(train.poses, np.stack([_pose(2), _pose(4)]), atol=1e-9)
    np.testing.assert_allclose(test[1].K, [[1170.19 / 4, 0, 647.75 / 4], [0, 1170.19 * 242 / 968, 483.75 / 4],
                                           [0, 0, 1]])
    assert (out / "test" / "rgb" / "frame-000000.color.jpg").read_bytes() == \
        (scene / "data" / "frame-000000.color.jpg").read_bytes()

    # pseudo ground truth as one list for both splits: unlisted frames are skipped, f replaces fx, fy
    entries = {1: _pose(21), 4: _pose(24)}
    text = ""
    for i, T in entries.items():
        q, t = _q_t(T)
        text += f"data/frame-{i:06d}.color.jpg " + " ".join(f"{v:.12f}" for v in (*q, *t)) + " 290.0\n"
    (tmp_path / "pgt.txt").write_text(text)
    assert main(["12scenes", str(tmp_path / "raw"), str(tmp_path / "pgt_out"), "--scene", "apt1/kitchen",
                 "--pgt", str(tmp_path / "pgt.txt")]) == 0
    out = tmp_path / "pgt_out" / "12scenes_apt1_kitchen"
    test, train = SceneSplit(out, "test"), SceneSplit(out, "train")
    assert test.names == ["frame-000001.color.jpg"] and train.names == ["frame-000004.color.jpg"]
    np.testing.assert_allclose(train[0].pose, _pose(24), atol=1e-9)
    assert test[0].K[0, 0] == test[0].K[1, 1] == 290.0 and test[0].K[0, 2] == pytest.approx(647.75 / 4)


# --------------------------------------------------------------------------- Cambridge

def test_cambridge(tmp_path):
    scene = tmp_path / "raw" / "KingsCollege"
    names = {"train": ["seq1/frame00001.png", "seq1/frame00002.png"], "test": ["seq2/frame00001.png"]}
    poses, cams = {}, {}
    for split, items in names.items():
        lines = ["Visual Landmark Dataset V1", "ImageFile, Camera Position [X Y Z W P Q R]", ""]
        for k, name in enumerate(items):
            T = _pose(len(poses))
            poses[name] = T
            cams[name.replace(".png", ".jpg")] = (1600.0 + 10 * len(poses), T)  # the NVM lists .jpg names
            _image(scene / name, 108, 192, 50 * len(poses))
            q, _ = _q_t(T)
            lines.append(f"{name} " + " ".join(f"{v:.12f}" for v in (*T[:3, 3], *q)))
        (scene / f"dataset_{split}.txt").write_text("\n".join(lines) + "\n")
    _nvm(scene / "reconstruction.nvm", cams)
    assert main(["cambridge", str(tmp_path / "raw"), str(tmp_path / "out"), "--resolution", "48"]) == 0
    out = tmp_path / "out" / "Cambridge_KingsCollege"
    train, test = SceneSplit(out, "train"), SceneSplit(out, "test")
    assert train.names == ["seq1_frame00001.color.png", "seq1_frame00002.color.png"]
    assert test.names == ["seq2_frame00001.color.png"]
    np.testing.assert_allclose(train.poses, np.stack([poses[n] for n in names["train"]]), atol=1e-9)
    np.testing.assert_allclose(test[0].pose, poses["seq2/frame00001.png"], atol=1e-9)
    assert test.load_rgb(0).shape == (48, 85, 3)  # 192×108 → shorter side 48, int(48·192/108) = 85
    f = 1600.0 + 10 * 3
    np.testing.assert_allclose(test[0].K, [[f * 85 / 192, 0, 42.5], [0, f * 48 / 108, 24.0], [0, 0, 1]])

    assert main(["cambridge", str(tmp_path / "raw"), str(tmp_path / "full"), "--resolution", "0",
                 "--scene", "KingsCollege"]) == 0
    full = SceneSplit(tmp_path / "full" / "Cambridge_KingsCollege", "train")
    np.testing.assert_allclose(full[1].K, [[1620.0, 0, 96], [0, 1620.0, 54], [0, 0, 1]])


def test_cambridge_image_missing_from_the_model(tmp_path, capsys):
    scene = tmp_path / "raw" / "ShopFacade"
    _image(scene / "seq1" / "frame00001.png", 36, 64, 10)
    for split in ("train", "test"):
        (scene / f"dataset_{split}.txt").write_text("h\nh\n\nseq1/frame00001.png 0 0 0 1 0 0 0\n")
    _nvm(scene / "reconstruction.nvm", {"seq1/other.jpg": (100.0, np.eye(4))})
    assert main(["cambridge", str(tmp_path / "raw"), str(tmp_path / "out")]) == 2
    assert "reconstruction.nvm has no camera for seq1/frame00001.png" in capsys.readouterr().err


# --------------------------------------------------------------------------- Aachen

def test_aachen(tmp_path):
    raw = tmp_path / "raw"
    db = {"db/1.jpg": (900.0, _pose(1)), "db/20.jpg": (950.0, _pose(2))}
    _image(raw / "images_upright" / "db" / "1.jpg", 30, 40, 20)
    _image(raw / "images_upright" / "db" / "20.jpg", 40, 30, 90)
    _nvm(raw / "3D-models" / "aachen_cvpr2018_db.nvm", db)
    _image(raw / "images_upright" / "query/day/milestone/2010-10-30_17-47-25_73.jpg", 24, 32, 60)
    _image(raw / "images_upright" / "query/night/nexus5x/IMG_1.jpg", 32, 24, 70)
    (raw / "queries").mkdir()
    (raw / "queries" / "day_time_queries_with_intrinsics.txt").write_text(
        "query/day/milestone/2010-10-30_17-47-25_73.jpg SIMPLE_RADIAL 32 24 30.5 16.1 11.9 0.02\n")
    (raw / "queries" / "night_time_queries_with_intrinsics.txt").write_text(
        "query/night/nexus5x/IMG_1.jpg SIMPLE_RADIAL 48 64 40.0 24 32 -0.01\n")  # listed at twice the size
    assert main(["aachen", str(raw), str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "aachen"
    train, test = SceneSplit(out, "train"), SceneSplit(out, "test")
    assert train.names == ["db_1.jpg", "db_20.jpg"] and train.has_ground_truth
    np.testing.assert_allclose(train.poses, np.stack([_pose(1), _pose(2)]), atol=1e-9)
    np.testing.assert_allclose(train[1].K, [[950.0, 0, 15], [0, 950.0, 20], [0, 0, 1]])  # 30 wide, 40 high
    assert test.names == ["query_day_milestone_2010-10-30_17-47-25_73.jpg", "query_night_nexus5x_IMG_1.jpg"]
    assert not test.has_ground_truth
    np.testing.assert_allclose(test[0].K, [[30.5, 0, 16.1], [0, 30.5, 11.9], [0, 0, 1]])
    np.testing.assert_allclose(test[1].K, [[20.0, 0, 12], [0, 20.0, 16], [0, 0, 1]])
    mapping = dict(line.split() for line in (out / "test" / "image_names.txt").read_text().splitlines())
    assert mapping["query_night_nexus5x_IMG_1.jpg"] == "query/night/nexus5x/IMG_1.jpg"


# --------------------------------------------------------------------------- CLI

def test_download_offline_fails_clearly(tmp_path, capsys):
    assert main(["7scenes", str(tmp_path / "raw"), str(tmp_path / "out"), "--scene", "heads", "--download"]) == 2
    err = capsys.readouterr().err
    assert "could not download https://download.microsoft.com/" in err and "heads.zip" in err
    assert "download it by hand" in err
    assert not list((tmp_path / "raw").glob("*.part"))


def test_cli_errors(tmp_path, capsys):
    assert main(["7scenes", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["12scenes", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no 12-Scenes scene" in capsys.readouterr().err
    assert main(["cambridge", str(tmp_path / "empty"), str(tmp_path / "out"), "--pgt", str(tmp_path)]) == 2
    assert "--pgt applies to 7scenes and 12scenes" in capsys.readouterr().err
    _seven_scenes(tmp_path / "raw")
    assert main(["7scenes", str(tmp_path / "raw"), str(tmp_path / "out"), "--scene", "fire"]) == 2
    assert "'fire' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--download" in capsys.readouterr().out
