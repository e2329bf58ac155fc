"""The relocalizer node on a live rclpy graph (loopback, per-session DDS domain): parameters, poses equal
to the offline evaluation, compressed input, fuzzed input, keep-latest dropping, shutdown, bad maps.

The tiny scene and map come from the session fixture ``tiny_scene`` (conftest.py). The node runs
in-process (``relocalizer_graph.RelocalizerGraph``) or, for start-up and shutdown, as a subprocess
through ``python -m glace_ros.relocalizer_node``. Its place in a robot's TF tree is tested in
test_robot_integration.py; lifecycle, services and hostile inputs in test_node_services.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter

from glace_ros.image_conversion import numpy_to_compressed, numpy_to_image
from glace_ros.pose_messages import pose_to_matrix, transform_to_matrix
from glace_ros.relocalizer_params import PARAMETERS

from relocalizer_graph import RelocalizerGraph, camera_info_msg, group_tf, session_domain_id
from relocalizer_scene import pose_error

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ros


_counter = iter(range(10_000))


@pytest.fixture
def graph_factory(context, tiny_scene):
    graphs = []

    def make(compressed: bool = False, **params) -> RelocalizerGraph:
        ns = f"reloc{os.getpid()}_{next(_counter)}"
        base = {"map_path": str(tiny_scene.map_path), "image_resolution": tiny_scene.resolution,
                "min_inlier_count": tiny_scene.min_inliers, "encoder_path": tiny_scene.encoder}
        if compressed:
            base["use_compressed"] = True
        g = RelocalizerGraph(context, ns, {**base, **params}, compressed=compressed)
        graphs.append(g)
        assert g.wait_matched(), "publishers and the node's subscriptions did not match"
        return g

    yield make
    for g in graphs:
        g.close()


def _rgb_msg(frame):
    return numpy_to_image(frame.rgb, "rgb8")


# --------------------------------------------------------------------------- parameters

def test_declared_parameters_are_the_definition(graph_factory):
    g = graph_factory()
    builtin = {"use_sim_time", "start_type_description_service"}  # rclpy declares these itself
    declared = set(g.node._parameters) - builtin
    assert declared == {p.name for p in PARAMETERS}
    for spec in PARAMETERS:
        desc = g.node.describe_parameter(spec.name)
        assert desc.description == spec.description and desc.read_only == spec.read_only
    # the on-set callback validates; accepted values reach the worker's parameters
    assert not g.node.set_parameters([Parameter("global_mode", value="sometimes")])[0].successful
    assert not g.node.set_parameters([Parameter("tf_mode", value="camera")])[0].successful  # read-only
    assert not g.node.set_parameters([Parameter("global_resolution", value=[480, 641])])[0].successful
    assert g.node.set_parameters([Parameter("hypotheses", value=128)])[0].successful
    assert g.node.params.hypotheses == 128
    assert g.node.set_parameters([Parameter("use_sim_time", value=True)])[0].successful  # rclpy's own


# --------------------------------------------------------------------------- accuracy

def test_localizes_the_test_frames_like_the_offline_evaluation(graph_factory, tiny_scene):
    from glace_core.head_ensemble import HeadEnsemble
    from glace_core.network import load_map

    # the cpu preset makes an ensemble map (3 heads for 36 frames): the node routes, runs and picks heads
    assert isinstance(load_map(tiny_scene.map_path), HeadEnsemble)
    g = graph_factory(tf_mode="camera")
    frame_id = "cam_optical"
    for i, frame in enumerate(tiny_scene.frames):
        g.localize_lockstep(_rgb_msg(frame), frame.K, *frame.rgb.shape[:2], (i + 1) * 10 ** 8, frame_id)
    assert g.processed() == len(tiny_scene.frames)
    assert g.wait_for(lambda: len(g.poses) == g.node.stats.localized and len(g.poses_cov) == len(g.poses)
                      and len(group_tf(g.tf, "map", "glace_camera")) == len(g.poses), 5.0)
    tf = group_tf(g.tf, "map", "glace_camera")
    node_errors, offline_errors = [], []
    for i, frame in enumerate(tiny_scene.frames):
        stamp = (i + 1) * 10 ** 8
        offline, inliers = tiny_scene.offline_poses[i], tiny_scene.offline_inliers[i]
        offline_publishable = offline is not None and inliers >= tiny_scene.min_inliers
        # the node publishes exactly for the frames the offline evaluation localizes (with enough inliers)
        assert (stamp in g.poses) == offline_publishable, f"frame {i}: offline {inliers} inliers"
        if not offline_publishable:
            continue
        pose = pose_to_matrix(g.poses[stamp][0].pose)
        # every pose comes with its covariance message and its TF, identical to it, in the map frame
        assert g.poses[stamp][0].header.frame_id == "map" and tf[stamp].child_frame_id == "glace_camera"
        assert np.allclose(transform_to_matrix(tf[stamp].transform), pose, atol=1e-6)
        assert np.allclose(pose_to_matrix(g.poses_cov[stamp].pose.pose), pose, atol=1e-6)
        cov = np.array(g.poses_cov[stamp].pose.covariance).reshape(6, 6)
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        # same frames, same seed, same pipeline: the same pose as the offline evaluation
        t_diff, r_diff = pose_error(pose, offline)
        assert t_diff < 0.01 and r_diff < 0.5, (i, t_diff, r_diff)
        node_errors.append(pose_error(pose, frame.gt))
        offline_errors.append(pose_error(offline, frame.gt))
    assert len(node_errors) >= len(tiny_scene.frames) // 2, "the tiny map localizes too few test frames"
    med_node = np.median(node_errors, axis=0)
    med_offline = np.median(offline_errors, axis=0)
    assert abs(med_node[0] - med_offline[0]) < 0.01 and abs(med_node[1] - med_offline[1]) < 0.5
    # and the tiny map is far better than chance in a 4 x 2.4 x 5 m room (not a pose accuracy goal)
    assert med_node[0] < 0.75 and med_node[1] < 20.0, med_node


def test_a_new_camera_is_warmed_up_at_its_first_frame(graph_factory, tiny_scene, monkeypatch):
    """A camera whose focal length differs from the map's (focal matching: another network input
    size) builds every head's graph at its first frame, once; the map's own camera was built at
    start-up. Otherwise each head would stall the first frame it is routed to."""
    from glace_core.localizer import Localizer

    warmed: list[tuple[int, int]] = []
    warm_up = Localizer.warm_up
    monkeypatch.setattr(Localizer, "warm_up", lambda self, *a, **k: warmed.append(a[:2]) or warm_up(self, *a, **k))
    g = graph_factory(image_resolution=0)  # the map's resolution, and focal matching
    assert len(warmed) == 1  # start-up
    frame = tiny_scene.frames[tiny_scene.good_frame]
    zoomed = frame.K.copy()
    zoomed[0, 0] *= 1.5
    zoomed[1, 1] *= 1.5
    for i, K in enumerate([frame.K, frame.K, zoomed, zoomed]):
        g.localize_lockstep(_rgb_msg(frame), K, *frame.rgb.shape[:2], (i + 1) * 10 ** 8)
        assert len(warmed) == (1 if i < 2 else 2), (i, warmed)
    localizer = g.node.localizer
    assert localizer._predictor.built_heads == list(range(len(localizer.model)))
    assert g.processed() == 4


def test_compressed_images_give_the_same_poses(graph_factory, tiny_scene):
    g = graph_factory(compressed=True)
    frame = tiny_scene.frames[tiny_scene.good_frame]
    msg = numpy_to_compressed(frame.rgb, "png", encoding="rgb8")  # lossless
    pose = g.localize_lockstep(msg, frame.K, *frame.rgb.shape[:2], 5 * 10 ** 9)
    assert pose is not None
    t_diff, r_diff = pose_error(pose_to_matrix(pose.pose), tiny_scene.offline_poses[tiny_scene.good_frame])
    assert t_diff < 1e-3 and r_diff < 0.05


# --------------------------------------------------------------------------- robustness

def _malformed_messages(rng: np.random.Generator, frame, n: int):
    """Yield (kind, image msg or None, CameraInfo-publishing K/size or a raw CameraInfo)."""
    from sensor_msgs.msg import Image

    h, w = frame.rgb.shape[:2]
    encodings = ["rgb8", "bgr8", "mono8", "mono16", "rgba8", "32FC1", "8UC3", "16UC1", "yuv422", "bayer_rggb8"]
    for i in range(n):
        kind = i % 10
        msg = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=frame.rgb.tobytes())
        info = None
        if kind == 0:
            msg.encoding = "".join(rng.choice(list("abcxyz0123_"), size=int(rng.integers(0, 12))))  # unknown
        elif kind == 1:
            msg.data = frame.rgb.tobytes()[: int(rng.integers(0, 3 * w * h))]  # shorter than step*height
        elif kind == 2:
            msg.height, msg.width, msg.step, msg.data = 0, int(rng.integers(0, 5)), 0, b""  # zero size
        elif kind == 3:
            msg.encoding = str(rng.choice(encodings))  # wrong encoding for the data (too short or garbage)
        elif kind == 4:
            msg.step = int(rng.integers(0, 3 * w))  # step smaller than a row
        elif kind == 5:
            K = frame.K.copy()
            K[0, 0] = float(rng.choice([0.0, np.nan, -5.0, np.inf]))
            info = camera_info_msg(K, h, w, 0, "fuzz")  # bad focal
        elif kind == 6:
            info = camera_info_msg(frame.K, h + int(rng.integers(1, 9)), w, 0, "fuzz")  # size mismatch
        elif kind == 7:
            info = camera_info_msg(frame.K, 0, 0, 0, "fuzz")  # zero-size CameraInfo
            msg = None
        elif kind == 8:
            small = rng.integers(0, 255, size=(int(rng.integers(1, 6)), int(rng.integers(1, 6)), 3), dtype=np.uint8)
            msg = numpy_to_image(small, "rgb8")  # tiny image, no matching CameraInfo size
        else:
            msg.height = int(rng.integers(1, 4 * h))  # header lies about the size
        yield kind, msg, info


def test_fuzzed_inputs_do_not_stop_the_node(graph_factory, tiny_scene):
    g = graph_factory()
    frame = tiny_scene.frames[tiny_scene.good_frame]
    h, w = frame.rgb.shape[:2]
    # one frame with no CameraInfo ever published for its frame_id
    g.publish_frame(_rgb_msg(frame), None, h, w, 10 ** 9, frame_id="never_calibrated")
    assert g.wait_for(lambda: g.node.stats.rejected.get("no_camera_info", 0) >= 1, 60.0)
    rng = np.random.default_rng(0)
    sent = 0
    g.info_pub.publish(camera_info_msg(frame.K, h, w, 0, "fuzz"))
    for kind, msg, info in _malformed_messages(rng, frame, 600):
        stamp = 2 * 10 ** 9 + sent * 1000
        if info is not None:
            info.header.stamp.sec, info.header.stamp.nanosec = stamp // 10 ** 9, stamp % 10 ** 9
            g.info_pub.publish(info)
            sent += 1
        if msg is not None:
            g.publish_frame(msg, None, h, w, stamp, frame_id="fuzz")
            sent += 1
        time.sleep(0.002)  # best effort: give the callbacks time to take them (keep-latest drops images)
    assert sent >= 500
    assert g.wait_for(lambda: g.node._worker.idle(), 60.0)
    stats = g.node.stats
    assert g.spinning() and g.node._worker.alive()
    rejected = dict(stats.rejected)
    assert rejected.get("camera_info", 0) >= 30, rejected  # bad CameraInfo (120 sent) is refused on arrival
    assert rejected.get("image", 0) >= 10 and rejected.get("input", 0) >= 3, rejected
    assert stats.last_error
    # and it still localizes a good frame
    pose = g.localize_lockstep(_rgb_msg(frame), frame.K, h, w, 50 * 10 ** 9, frame_id="good")
    assert pose is not None
    t_diff, _ = pose_error(pose_to_matrix(pose.pose), tiny_scene.offline_poses[tiny_scene.good_frame])
    assert t_diff < 1e-3


def test_keep_latest_drops_frames_and_bounds_latency(graph_factory, tiny_scene):
    g = graph_factory()
    frame = tiny_scene.frames[tiny_scene.good_frame]
    h, w = frame.rgb.shape[:2]
    g.localize_lockstep(_rgb_msg(frame), frame.K, h, w, 10 ** 9)  # warm up
    n = 40
    stamps = [2 * 10 ** 9 + i * 10 ** 6 for i in range(n)]
    g.info_pub.publish(camera_info_msg(frame.K, h, w, stamps[0], "camera_optical_frame"))
    for stamp in stamps:  # much faster than the node processes
        g.publish_frame(_rgb_msg(frame), None, h, w, stamp)
        time.sleep(0.002)
    assert g.wait_for(lambda: stamps[-1] in g.poses, 120.0), "the newest frame was never answered"
    before = g.diagnostics_count
    assert g.wait_for(lambda: g.diagnostics_count > before + 1, 10.0)
    dropped = int(g.diagnostics["frames_dropped"])
    answered = [s for s in stamps if s in g.poses]
    assert dropped >= 1 and len(answered) < n
    assert int(g.diagnostics["frames_received"]) - 1 == dropped + len(answered)  # every received frame accounted
    assert 0 <= float(g.diagnostics["mapping_view_distance_m"]) < 1.0  # the map records its mapping cameras
    # bounded latency, counted in frames, not seconds: between publishing a frame and receiving its answer
    # only the frame being processed and the one waiting in the slot are answered (+ 2 for delivery jitter);
    # a queue would answer every frame still queued before it (here up to ~n)
    order = [s for s in g.pose_order if s in stamps]
    for s in answered:
        published, arrived = g.published_at[s], g.poses[s][1]
        in_between = [o for o in order if o != s and published < g.poses[o][1] < arrived]
        assert len(in_between) <= 4, (s, in_between)


def test_shutdown_on_sigint_is_clean(tiny_scene, tmp_path):
    proc = _start_node(tiny_scene, tmp_path, ["-p", f"map_path:={tiny_scene.map_path}"])
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "node.log"
        while "localizing against" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def _start_node(tiny_scene, tmp_path, ros_args):
    env = dict(os.environ, ROS_DOMAIN_ID=str(session_domain_id()))
    cmd = [sys.executable, "-m", "glace_ros.relocalizer_node", "--ros-args", "-r", f"__ns:=/sub{os.getpid()}",
           "-p", f"encoder_path:={tiny_scene.encoder}", *ros_args]
    log = open(tmp_path / "node.log", "wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


@pytest.mark.parametrize("problem", ["missing", "corrupt", "unset"])
def test_bad_map_is_fatal_and_names_the_file(problem, tmp_path):
    map_path = tmp_path / "maps" / "office_map.pt"
    if problem == "corrupt":
        map_path.parent.mkdir()
        map_path.write_bytes(b"PK\x03\x04 this is not a torch file" * 10)
    args = [] if problem == "unset" else ["-p", f"map_path:={map_path}"]
    env = dict(os.environ, ROS_DOMAIN_ID=str(session_domain_id()))
    out = subprocess.run([sys.executable, "-m", "glace_ros.relocalizer_node", "--ros-args", *args],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "FATAL" in text, text
    assert "Traceback" not in text, text
    assert (str(map_path) in text) if problem != "unset" else ("map_path is not set" in text), text
