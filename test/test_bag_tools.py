"""Bag tools: poses from pose topics, bags to training scenes, replay evaluation
through the live relocalizer node, glace-train --bag, damaged bags, plots."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from glace_ros import scene_to_bag as s2b
from glace_ros.bag_io import BagError, BagReader, BagWriter
from glace_ros.bag_to_scene import read_pose_topic
from tf_fixtures import pose as _pose
from tf_fixtures import write_tf_bag as _write_tf_bag


def test_pose_topic_trajectory(tmp_path):
    _write_tf_bag(tmp_path / "bag")
    with BagReader(tmp_path / "bag") as bag:
        traj = read_pose_topic(bag, "/pose", max_gap_s=0.2)
        with pytest.raises(BagError, match="pose topic /tf has type tf2_msgs/msg/TFMessage"):
            read_pose_topic(bag, "/tf")
        with pytest.raises(BagError, match="no topic /nope"):
            read_pose_topic(bag, "/nope")
    poses, ok = traj.at(np.array([50_000_000, 2_000_000_000, 2_100_000_000]))
    assert ok.tolist() == [True, True, False]
    np.testing.assert_allclose(poses[0], _pose([0, 0.005, 0], [0.5, 0, 0]), atol=1e-12)
    np.testing.assert_allclose(poses[1], _pose([0, 0.2, 0], [20, 0, 0]), atol=1e-12)


def _corrupt_bag(tmp_path, storage):
    path = tmp_path / f"bad_{storage}"
    _write_tf_bag(path, storage)
    (data,) = [p for p in path.iterdir() if p.suffix in (".mcap", ".db3")]
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 3])
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_eval_cli_damaged_bag_exit_code_2(tmp_path, storage):

    bag = _corrupt_bag(tmp_path, storage)
    fake_map = tmp_path / "map.pt"
    fake_map.write_bytes(b"\0")
    proc = subprocess.run([sys.executable, "-m", "glace_ros.replay_eval", str(bag), "--map", str(fake_map),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "glace-replay-eval: error: " in proc.stderr and str(bag) in proc.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


def test_replay_eval_rejects_bad_options(tmp_path, capsys):
    from glace_ros import replay_eval

    _write_tf_bag(tmp_path / "bag")
    assert replay_eval.main([str(tmp_path / "bag"), "--map", str(tmp_path / "missing.pt")]) == 2
    assert "map file" in capsys.readouterr().err
    (tmp_path / "m.pt").write_bytes(b"\0")
    assert replay_eval.main([str(tmp_path / "bag"), "--map", str(tmp_path / "m.pt"), "--rate", "0"]) == 2
    assert "rate must be" in capsys.readouterr().err
    # no image topic in this bag: the error lists the bag's topics
    assert replay_eval.main([str(tmp_path / "bag"), "--map", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "image topic" in err and "/tf (tf2_msgs/msg/TFMessage)" in err


def _assert_png(path, size):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size


def test_plots_write_valid_pngs(tmp_path):
    from glace_ros import plots

    rng = np.random.default_rng(0)
    gt = np.cumsum(rng.normal(size=(20, 3)) * [0.3, 0.01, 0.3], axis=0)  # flat in y: top-down is x-z
    est = gt + rng.normal(size=gt.shape) * 0.02
    est[3] = np.nan
    t_err = np.linalg.norm(est - gt, axis=1)
    t_err[3] = np.inf
    r_err = np.abs(rng.normal(size=20))
    r_err[3] = np.inf
    assert plots.top_down_axes(gt) == (0, 2)
    _assert_png(plots.plot_trajectory(est, gt, tmp_path / "t.png"), (640, 480))
    _assert_png(plots.plot_error_cdf(t_err, r_err, tmp_path / "c.png"), (960, 400))
    _assert_png(plots.plot_error_over_time(np.arange(20) * 0.1, t_err, r_err, tmp_path / "o.png"), (960, 480))
    with pytest.raises(ValueError, match=r"est_centres \(19, 3\) and gt_centres \(20, 3\)"):
        plots.plot_trajectory(est[1:], gt, tmp_path / "x.png")
    with pytest.raises(ValueError, match="must have the same length"):
        plots.plot_error_cdf(t_err, r_err[:3], tmp_path / "x.png")


# --------------------------------------------------------------------------- end to end
# These use the other parts of the package: glace_core.synthetic (scenes), glace_core.dataset
# (SceneSplit), glace_core.cli.train / glace_core.cli.evaluate (glace-train, glace-eval), the
# native RANSAC and the relocalizer node. The glue to them is kept in the helpers below.

SEED = 7


@pytest.fixture(scope="session")
def ros_domain():
    """A ROS_DOMAIN_ID of our own for this test session (no cross-talk with other sessions)."""
    import os

    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    yield int(os.environ["ROS_DOMAIN_ID"])
    if old is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = old


@pytest.fixture(scope="session")
def scene(tmp_path_factory):
    from glace_core.synthetic import make_scene

    root = tmp_path_factory.mktemp("bagtools") / "scene"
    make_scene(root, seed=3, n_train=48, n_test=6)
    return root


@pytest.fixture(scope="session")
def untrained_map(tmp_path_factory):
    """A randomly initialised head for the default encoder: the node and glace-eval both answer
    every frame with it (poor poses), which is enough to compare the two pipelines."""
    import torch

    from glace_core.encoder_registry import encoder_sidecar_entry, resolve_encoder
    from glace_core.head import GlaceHead
    from glace_core.map_files import save_head

    torch.manual_seed(0)
    encoder = resolve_encoder(None)
    head = GlaceHead(local_channels=encoder.out_channels, head_channels=64, num_head_blocks=0)
    path = tmp_path_factory.mktemp("untrained") / "untrained.pt"
    save_head(head, path, {"encoder": encoder_sidecar_entry(encoder)})
    return path


def _bag(scene, tmp_path, storage, compressed=False, split="test"):
    out = tmp_path / f"{split}_{storage}{'_c' if compressed else ''}"
    args = [str(scene), str(out), "--split", split, "--storage", storage, "--rate", "5"]
    assert s2b.main(args + (["--compressed", "--compressed-format", "png"] if compressed else [])) == 0
    return out


def _glace_eval_poses(scene, map_path, tmp_path, hypotheses) -> list[np.ndarray]:
    """glace-eval on the scene's test split with the same RANSAC options: camera-to-world poses in
    frame order."""
    import shutil

    from glace_core.cli import evaluate

    work = tmp_path / "eval_map.pt"
    shutil.copy(map_path, work)
    shutil.copy(str(map_path) + ".json", str(work) + ".json")
    assert evaluate.main([str(scene), str(work), "--seed", str(SEED), "--hypotheses", str(hypotheses)]) == 0
    (poses_file,) = list(tmp_path.glob("poses_*.txt"))
    return _read_poses_file(poses_file)


def _read_poses_file(path) -> list[np.ndarray]:
    """glace-eval poses file (world→camera quaternion + translation) → camera-to-world, in file order."""
    out = []
    for line in path.read_text().splitlines():
        v = line.split()
        qw, qx, qy, qz, tx, ty, tz = map(float, v[1:8])
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
        w2c[:3, 3] = (tx, ty, tz)
        out.append(np.linalg.inv(w2c))
    return out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_scene_to_bag_round_trip(scene, tmp_path, storage):
    from glace_core.dataset import SceneSplit
    from glace_ros.camera_info import intrinsics_from_camera_info
    from glace_ros.image_conversion import to_rgb_u8
    from glace_ros.pose_messages import pose_to_matrix, transform_to_matrix

    split = SceneSplit(scene, "test")
    bag_path = _bag(scene, tmp_path, storage, compressed=storage == "sqlite3")
    with BagReader(bag_path) as bag:
        image_topic = "/camera/image_raw" + ("/compressed" if storage == "sqlite3" else "")
        assert set(bag.topics) == {image_topic, "/camera/camera_info", "/ground_truth/pose", "/tf"}
        msgs = {t: [bag.deserialize(m) for m in bag.messages([t])] for t in bag.topics}
    assert all(len(v) == len(split) for v in msgs.values())
    for i in range(len(split)):
        frame = split[i]
        stamps = {t: v[i].header.stamp for t, v in msgs.items() if t != "/tf"}
        assert len({(s.sec, s.nanosec) for s in stamps.values()}) == 1
        assert stamps["/ground_truth/pose"].nanosec == (i * 200_000_000) % 1_000_000_000
        np.testing.assert_allclose(pose_to_matrix(msgs["/ground_truth/pose"][i].pose), frame.pose, atol=1e-9)
        tf = msgs["/tf"][i].transforms[0]
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "camera_gt")
        np.testing.assert_allclose(transform_to_matrix(tf.transform), frame.pose, atol=1e-9)
        np.testing.assert_allclose(intrinsics_from_camera_info(msgs["/camera/camera_info"][i]), frame.K, atol=1e-9)
        np.testing.assert_array_equal(to_rgb_u8(msgs[image_topic][i]), split.load_rgb(i))  # png: lossless
        assert msgs[image_topic][i].header.frame_id == "camera_optical_frame"


@pytest.mark.ros
def test_replay_eval_agrees_with_glace_eval(scene, untrained_map, ros_domain, tmp_path):
    """Same frames, same map, same RANSAC seed: the live node's poses equal glace-eval's."""
    from PIL import Image

    from glace_ros import replay_eval

    bag_path = _bag(scene, tmp_path, "mcap")
    out = tmp_path / "replay"
    code = replay_eval.main([str(bag_path), "--map", str(untrained_map), "--out", str(out), "--lockstep",
                             "--seed", str(SEED), "--hypotheses", "16", "--no-quality-gate"])
    assert code == 0
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["answered"] == 6 and summary["answered_fraction"] == 1.0
    assert summary["latency"]["count"] == 6 and 0 < summary["latency"]["p50_ms"] <= summary["latency"]["max_ms"]
    # the node's own counts are from a /diagnostics sent after its last pose: every frame is in them
    node = summary["node"]
    assert int(node["frames_received"]) >= 6 and int(node["frames_processed"]) >= 6, node
    replayed = _read_poses_file(out / "poses_test_mcap.txt")
    reference = _glace_eval_poses(scene, untrained_map, tmp_path, hypotheses=16)
    assert len(replayed) == len(reference) == 6
    for a, b in zip(replayed, reference):
        np.testing.assert_allclose(a, b, atol=1e-4)
    for name in ("trajectory.png", "error_cdf.png", "error_over_time.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] >= 400


def _bare_shell_env(ros_domain: int) -> dict:
    """What a shell that only activated .venv has: no scripts/env.sh (no AMENT_PREFIX_PATH, Fast DDS
    profile or ROS_LOG_DIR)."""
    import os

    venv = Path(sys.executable).parent.parent
    keep = {k: os.environ[k] for k in ("HOME", "LANG", "TMPDIR") if k in os.environ}
    return {**keep, "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv),
            "ROS_DOMAIN_ID": str(ros_domain), "PYTHONUNBUFFERED": "1"}


@pytest.mark.ros
def test_replay_eval_from_a_bare_shell(scene, untrained_map, ros_domain, tmp_path):
    """640x480 images between two processes, without scripts/env.sh: every frame arrives (lockstep)."""
    bag_path = _bag(scene, tmp_path, "mcap")
    out = tmp_path / "bare"
    proc = subprocess.run(["glace-replay-eval", str(bag_path), "--map", str(untrained_map), "--out", str(out),
                           "--lockstep", "--hypotheses", "16", "--no-quality-gate"],
                          env=_bare_shell_env(ros_domain), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["answered"] == summary["frames"] == 6, summary


@pytest.mark.ros
def test_replay_eval_fails_when_too_few_frames_are_answered(scene, untrained_map, ros_domain, tmp_path, capsys):
    from glace_ros import replay_eval

    bag_path = _bag(scene, tmp_path, "mcap")
    args = [str(bag_path), "--map", str(untrained_map), "--lockstep", "--hypotheses", "8",
            "--min-inlier-count", "1000000000"]  # the node answers nothing
    assert replay_eval.main(args + ["--out", str(tmp_path / "a")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "only 0 of 6 frames were answered" in err[-1] and "--allow-drops" in err[-1]
    assert replay_eval.main(args + ["--out", str(tmp_path / "b"), "--allow-drops"]) == 0


def _pids_with(text: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.ros
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_stopping_replay_eval_stops_its_node(scene, untrained_map, ros_domain, tmp_path, signal_name):
    """SIGTERM (handled) and SIGKILL (the node's parent-death signal) both end the node it started."""
    import os
    import signal
    import time

    bag_path = _bag(scene, tmp_path, "mcap")
    name = f"orphan_check_{os.getpid()}_{signal_name.lower()}"
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "glace_ros.replay_eval", str(bag_path), "--map",
                             str(untrained_map), "--out", str(out), "--rate", "0.02", "--node-name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        log = out / "node.log"
        while time.monotonic() < deadline and not (log.is_file() and "localizing against" in log.read_text()):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
        assert _pids_with(f"__node:={name}"), "the node did not start"
        proc.send_signal(getattr(signal, signal_name))
        proc.wait(60)
        deadline = time.monotonic() + 30
        while _pids_with(f"__node:={name}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _pids_with(f"__node:={name}"), f"the node outlived glace-replay-eval ({signal_name})"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _pids_with(f"__node:={name}"):
            os.kill(pid, 9)


def test_bag_to_scene_interpolates_and_counts_skipped(tmp_path):
    """Images at 10 Hz, SLAM poses at 4 Hz covering only part of them, CameraInfo at 1 Hz."""
    from glace_core.dataset import SceneSplit
    from glace_ros.bag_to_scene import BagSource, bag_to_scene

    K = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])
    traj = lambda t: _pose([0, 0.2 * t, 0], [t, 0.5 * t, 0])  # noqa: E731  linear in t: lerp/slerp exact
    with BagWriter(tmp_path / "bag", storage="sqlite3") as bag:
        types = bag.types
        for k in range(20):  # images 0.0 .. 1.9 s
            t = k * 100_000_000
            header = s2b._header(types, t, "cam")
            if k % 10 == 0:
                bag.write("/info", s2b.camera_info_message(types, header, K, 24, 32), "sensor_msgs/msg/CameraInfo", t)
            bag.write("/img", s2b.image_message(types, header, np.full((24, 32, 3), 10 * k, np.uint8)),
                      "sensor_msgs/msg/Image", t)
        for k in range(2, 7):  # poses 0.5 .. 1.5 s
            t = k * 250_000_000
            header = s2b._header(types, t, "map")
            bag.write("/slam", types["geometry_msgs/msg/PoseStamped"](header=header, pose=s2b.pose_message(types, traj(t * 1e-9))),
                      "geometry_msgs/msg/PoseStamped", t)
    result = bag_to_scene(tmp_path / "bag", tmp_path / "scene", BagSource(pose_topic="/slam"))
    assert (result.images, result.written, result.skipped_no_pose) == (20, 11, 9)  # 0.5 .. 1.5 s kept
    split = SceneSplit(tmp_path / "scene", "train")
    assert len(split) == 11
    for i in range(11):
        t = 0.5 + 0.1 * i
        np.testing.assert_allclose(split.poses[i], traj(t), atol=1e-6)
        np.testing.assert_allclose(split[i].K, K, atol=1e-6)
        assert split.load_rgb(i)[0, 0, 0] == 10 * (5 + i)
    with pytest.raises(ValueError, match="exactly one pose source"):
        bag_to_scene(tmp_path / "bag", tmp_path / "s2", BagSource(pose_topic="/slam", tf_frames=("map", "cam")))


@pytest.mark.slow
@pytest.mark.ros
def test_train_from_bag_localizes_the_test_bag(scene, untrained_map, ros_domain, tmp_path):
    """glace-train --bag (poses from TF) gives a map that localizes the scene's test bag far
    better than an untrained map."""
    import json

    from glace_ros import replay_eval, train_from_bag

    train_bag = _bag(scene, tmp_path, "sqlite3", compressed=True, split="train")
    test_bag = _bag(scene, tmp_path, "mcap")
    map_path = tmp_path / "from_bag.pt"
    assert train_from_bag.main(["--bag", str(train_bag), "--tf-frames", "map", "camera_gt",
                           str(map_path), "--preset", "cpu", "--image_resolution", "240",
                           "--max_iterations", "1500"]) == 0  # the bag path is under test, not the preset
    medians = {}
    for name, m in (("trained", map_path), ("untrained", untrained_map)):
        out = tmp_path / f"replay_{name}"
        assert replay_eval.main([str(test_bag), "--map", str(m), "--out", str(out), "--lockstep",
                                 "--seed", str(SEED), "--no-quality-gate"]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["answered"] == 6
        medians[name] = summary["accuracy"]
    assert medians["trained"]["median_t_cm"] < 0.3 * medians["untrained"]["median_t_cm"], medians


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_train_from_damaged_bag_exit_code_2(tmp_path, capsys, monkeypatch, storage):
    import tempfile

    from glace_ros.train_from_bag import train_main_with_bag

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the temporary scene goes here

    def must_not_train(argv):
        raise AssertionError(f"training started on a damaged bag: {argv}")

    bag = _corrupt_bag(tmp_path, storage)
    argv = ["--bag", str(bag), "--tf-frames", "map", "camera_optical", str(tmp_path / "m.pt")]
    assert train_main_with_bag(argv, must_not_train) == 2
    err = capsys.readouterr().err
    assert err.startswith("glace-train: error: cannot open bag") and str(bag) in err and "Traceback" not in err
    assert not list(tmp_path.glob("glace-bag-scene-*"))
    # bag options without --bag are refused; without any, the arguments pass through unchanged
    assert train_main_with_bag(["scene", "m.pt", "--pose-topic", "/p"], must_not_train) == 2
    assert "--pose-topic only apply with --bag" in capsys.readouterr().err
    assert train_main_with_bag(["scene", "m.pt", "--preset", "cpu"], lambda a: 0 if a == ["scene", "m.pt", "--preset", "cpu"] else 1) == 0
