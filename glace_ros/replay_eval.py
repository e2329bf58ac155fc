"""`glace-replay-eval`: replay a rosbag2 through the live relocalizer node and score its poses.

1. Reads the ground truth of every image from the bag (a pose topic, or a TF pair such as
   map → camera_gt), matched to the images by header stamp.
2. Starts the relocalizer node as a separate process (``glace_ros.relocalizer_node.main`` with
   ``--ros-args``: the map, the RANSAC options and the bag's topics as parameters) and waits until
   its subscriptions are matched with our publishers and its pose publisher with our subscriber.
3. Publishes the bag's raw CDR bytes on the recorded topics (images, camera info, /tf,
   /tf_static) with reliable publishers, which match the node's sensor-data subscriptions, at
   ``rate`` × the bag's speed, as fast as possible, or one image at a time (``lockstep``).
4. Records the node's PoseStamped answers (stamped with the image stamp), waits for trailing
   answers, and computes glace-eval's metrics (:mod:`glace_core.evaluation`) over all frames with
   ground truth (a frame without an answer counts as a failure with infinite error), plus the
   fraction of frames answered and the latency from publishing an image to receiving its pose.
5. Writes into OUT: ``poses_<bag>.txt`` (glace-eval format), ``summary.json``, ``trajectory.png``,
   ``error_cdf.png``, ``error_over_time.png`` and the node's log ``node.log``.

DDS discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST unless set) and ROS
logs go to a temporary folder unless ROS_LOG_DIR is set.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from glace_ros.bag_dataset import IMAGE_TYPES, POSE_TYPES, TfTree, read_pose_topic, resolve_topic
from glace_ros.bag_io import BagError, BagReader, stamp_to_ns

logger = logging.getLogger(__name__)

DEFAULT_GT_TOPIC = "/ground_truth/pose"
NODE_MAIN = "import sys; from glace_ros.relocalizer_node import main; sys.exit(main())"


class ReplayError(RuntimeError):
    """The node could not be started, or the replay could not run."""


@dataclass
class ReplayOptions:
    """Options of one replay; CLI flags map one-to-one onto the fields."""

    map_path: str  # GLACE head file (with its .json sidecar)
    encoder_path: str | None = None  # encoder weights; None: the node's default
    out: str | None = None  # output folder; None: replay_<bag name> beside the bag
    rate: float = 1.0  # replay speed as a factor of the bag's time
    as_fast_as_possible: bool = False  # publish without waiting (ignores rate)
    lockstep: bool = False  # publish the next image only after the node answered the last one
    frame_timeout: float = 30.0  # lockstep: seconds to wait for one answer
    image_topic: str | None = None  # None: the bag's only Image/CompressedImage topic
    camera_info_topic: str | None = None  # None: the bag's only CameraInfo topic
    gt_topic: str | None = None  # ground-truth pose topic; default /ground_truth/pose when present
    gt_tf: tuple[str, str] | None = None  # (map frame, ground-truth camera frame) in the bag's TF
    replay_tf: bool = True  # also publish the bag's /tf and /tf_static
    hypotheses: int | None = None  # node's RANSAC options; None: the node's defaults
    threshold: float | None = None
    inlieralpha: float | None = None
    maxpixelerror: float | None = None
    seed: int | None = None
    min_inlier_count: int | None = None  # node's publishing floor; None: the node's default (0 answers all)
    ensemble_candidates: int | None = None  # heads of an ensemble map tried per frame; None: the node's default
    node_params: str | None = None  # YAML parameter file for the node (flags above override it)
    node_name: str = "glace_relocalizer"
    startup_timeout: float = 180.0  # seconds for the node to load its map and match the topics
    tail_timeout: float = 20.0  # seconds to wait for answers after the last image
    max_gt_gap: float = 0.1  # seconds: ground truth further from an image stamp is not interpolated

    def validate(self) -> None:
        if not (self.rate > 0 and np.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive factor of the bag's speed, got {self.rate}")
        if self.gt_topic is not None and self.gt_tf is not None:
            raise ValueError("give at most one ground-truth source: --gt-topic or --gt-tf")
        for name in ("frame_timeout", "startup_timeout", "tail_timeout", "max_gt_gap"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not Path(self.map_path).is_file():
            raise ValueError(f"map file {self.map_path} does not exist")
        if self.node_params is not None and not Path(self.node_params).is_file():
            raise ValueError(f"node parameter file {self.node_params} does not exist")


@dataclass
class FrameResult:
    """One image of the replay: stamps, the node's answer and the ground truth."""

    stamp_ns: int
    published_ns: int  # monotonic clock when published
    pose: np.ndarray | None = None  # (4, 4) camera-to-world from the node
    received_ns: int | None = None  # monotonic clock when the pose arrived
    gt: np.ndarray | None = None  # (4, 4) camera-to-world ground truth

    @property
    def name(self) -> str:
        return f"{self.stamp_ns // 1_000_000_000}.{self.stamp_ns % 1_000_000_000:09d}"

    @property
    def latency_s(self) -> float | None:
        return None if self.received_ns is None else (self.received_ns - self.published_ns) * 1e-9


@dataclass
class ReplayResult:
    frames: list[FrameResult]
    summary: dict
    out: Path
    files: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- environment

def ros_environment(base: dict | None = None) -> dict:
    """``base`` (default os.environ) with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a temporary
    ROS_LOG_DIR where they are unset."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if not env.get("ROS_LOG_DIR"):
        env["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="glace-roslog-")
    return env


def _message_class(msgtype: str):
    """'pkg/msg/Name' → the rclpy message class."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"message type {msgtype} is not installed for rclpy: {exc}") from exc


# --------------------------------------------------------------------------- ground truth

def read_image_stamps(bag: BagReader, image_topic: str) -> list[int]:
    """Header stamps (ns) of the images on ``image_topic``, in bag order."""
    return [stamp_to_ns(bag.deserialize(m).header.stamp) for m in bag.messages([image_topic])]


def ground_truth(bag: BagReader, stamps_ns: np.ndarray, gt_topic: str | None, gt_tf: tuple[str, str] | None,
                 max_gap_s: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Ground-truth camera-to-world poses at the (N,) image stamps: (N, 4, 4) (NaN where none),
    (N,) bool mask, and a description of the source. Without an explicit source the bag's
    /ground_truth/pose is used."""
    if gt_topic is None and gt_tf is None:
        if DEFAULT_GT_TOPIC not in bag.topics:
            raise BagError(f"bag {bag.path} has no {DEFAULT_GT_TOPIC}; name the ground truth with --gt-topic "
                           f"TOPIC or --gt-tf MAP CAMERA_GT (topics: {', '.join(sorted(bag.topics))})")
        gt_topic = DEFAULT_GT_TOPIC
    if gt_topic is not None:
        resolve_topic(bag, gt_topic, POSE_TYPES, "ground-truth")
        poses, ok = read_pose_topic(bag, gt_topic, max_gap_s).at(stamps_ns)
        return poses, ok, f"topic {gt_topic}"
    tree = TfTree.from_bag(bag, max_gap_s)
    try:
        poses, ok = tree.lookup(gt_tf[0], gt_tf[1], stamps_ns)
    except LookupError as exc:
        raise BagError(f"bag {bag.path}: ground truth {gt_tf[0]} -> {gt_tf[1]}: {exc}") from exc
    return poses, ok, f"TF {gt_tf[0]} -> {gt_tf[1]}"


# --------------------------------------------------------------------------- the node

def node_parameters(opt: ReplayOptions, image_topic: str, info_topic: str, compressed: bool) -> dict:
    """Parameters for the relocalizer node (names of config/relocalizer.yaml)."""
    params = {"map_path": str(Path(opt.map_path).resolve()), "image_topic": image_topic,
              "camera_info_topic": info_topic, "use_compressed": bool(compressed)}
    if opt.encoder_path is not None:
        encoder = Path(opt.encoder_path)  # a file (made absolute for the node) or a named encoder ("xfeat")
        params["encoder_path"] = str(encoder.resolve()) if encoder.exists() else str(opt.encoder_path)
    for key in NODE_PARAM_NAMES:
        value = getattr(opt, key)
        if value is not None:
            params[NODE_PARAM_NAMES[key]] = value
    return params


NODE_PARAM_NAMES = {"hypotheses": "hypotheses", "threshold": "threshold", "inlieralpha": "inlier_alpha",
                    "maxpixelerror": "max_reprojection_error", "seed": "seed",
                    "min_inlier_count": "min_inlier_count", "ensemble_candidates": "ensemble_candidates"}


class NodeProcess:
    """The relocalizer node in its own process, its output in ``log_path``."""

    def __init__(self, name: str, params: dict, user_params: str | None, env: dict, log_path: Path):
        import yaml

        self.log_path = log_path
        self._params_file = tempfile.NamedTemporaryFile("w", prefix="glace-replay-", suffix=".yaml", delete=False)
        yaml.safe_dump({"/**": {"ros__parameters": params}}, self._params_file)
        self._params_file.close()
        cmd = [sys.executable, "-c", NODE_MAIN, "--ros-args", "-r", f"__node:={name}"]
        if user_params is not None:
            cmd += ["--params-file", str(Path(user_params).resolve())]
        cmd += ["--params-file", self._params_file.name]  # later files override earlier ones
        self._log = open(log_path, "wb")
        logger.info("starting the node: %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout`` s; returns the exit code."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("the node did not stop within %.0f s of SIGINT; killing it", timeout)
                    self.proc.kill()
                    self.proc.wait(5)
            return self.proc.returncode
        finally:
            self._log.close()
            os.unlink(self._params_file.name)


# --------------------------------------------------------------------------- replay

class _Recorder:
    """Answers of the node, keyed by stamp, with their arrival times, and how many images the node
    has finished (its /diagnostics ``frames_processed + frames_dropped``, published at 1 Hz): in
    lockstep, a frame the node finished without a pose (RANSAC failed, too few inliers) does not
    hold the replay for the whole frame timeout."""

    def __init__(self, node_name: str = ""):
        self.cond = threading.Condition()
        self.answers: dict[int, tuple[np.ndarray, int]] = {}
        self.last_ns = 0
        self.finished = 0
        self._status_prefix = "/" + node_name.lstrip("/") + ":"

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if not str(status.name).startswith(self._status_prefix):
                continue
            values = {kv.key: kv.value for kv in status.values}
            try:
                finished = int(values["frames_processed"]) + int(values["frames_dropped"])
            except (KeyError, ValueError):
                continue
            with self.cond:
                self.finished = max(self.finished, finished)
                self.cond.notify_all()

    def on_pose(self, msg) -> None:
        from glace_ros.pose_messages import pose_to_matrix

        now = time.monotonic_ns()
        stamp = stamp_to_ns(msg.header.stamp)
        with self.cond:
            self.answers.setdefault(stamp, (pose_to_matrix(msg.pose), now))
            self.last_ns = now
            self.cond.notify_all()

    def wait_for(self, stamp: int, timeout: float, published: int | None = None) -> bool:
        """Wait until the pose of ``stamp`` arrived (True) or, given the number of images
        ``published`` so far, the node reports them all finished without it (False), or timeout."""
        with self.cond:
            self.cond.wait_for(lambda: stamp in self.answers or (published is not None and self.finished >= published),
                               timeout)
            return stamp in self.answers


def _replay(bag: BagReader, opt: ReplayOptions, topics: list[str], image_topic: str, info_topic: str,
            node: NodeProcess, env: dict) -> tuple[list[FrameResult], _Recorder]:
    """Publish the bag into a live graph shared with ``node``; returns the published frames."""
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR"):  # rclpy reads them at init
        os.environ.setdefault(key, env[key])
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    from glace_ros.qos import pose_qos

    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    ros = rclpy.create_node("glace_replay_eval", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(ros)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    recorder = _Recorder(opt.node_name)
    frames: list[FrameResult] = []
    try:
        from geometry_msgs.msg import PoseStamped

        pose_topic = f"/{opt.node_name}/pose"
        from diagnostic_msgs.msg import DiagnosticArray

        sub = ros.create_subscription(PoseStamped, pose_topic, recorder.on_pose, pose_qos(100))
        ros.create_subscription(DiagnosticArray, "/diagnostics", recorder.on_diagnostics, pose_qos(10))
        publishers = {}
        for topic in topics:
            static = topic == "/tf_static"
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100 if static else 10,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if static else DurabilityPolicy.VOLATILE)
            publishers[topic] = ros.create_publisher(_message_class(bag.topics[topic]), topic, qos)
        needed = [publishers[image_topic], publishers[info_topic]]
        deadline = time.monotonic() + opt.startup_timeout
        while not (all(p.get_subscription_count() > 0 for p in needed) and sub.get_publisher_count() > 0):
            if not node.alive():
                raise ReplayError(f"the relocalizer node exited with code {node.proc.returncode} before it was "
                                  f"ready; its log ({node.log_path}) ends with:\n{node.log_tail()}")
            if time.monotonic() > deadline:
                raise ReplayError(f"the relocalizer node did not subscribe to {image_topic} and publish {pose_topic} "
                                  f"within {opt.startup_timeout:.0f} s; its log ({node.log_path}) ends with:\n"
                                  f"{node.log_tail()}")
            time.sleep(0.1)
        time.sleep(0.5)  # let the remaining endpoints of the graph match
        logger.info("node ready; replaying %s", ", ".join(topics))

        start_wall, start_bag = None, None
        for m in bag.messages(topics):
            if start_wall is None:
                start_wall, start_bag = time.monotonic(), m.timestamp_ns
            if not (opt.as_fast_as_possible or opt.lockstep):
                delay = start_wall + (m.timestamp_ns - start_bag) * 1e-9 / opt.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if not node.alive():
                raise ReplayError(f"the relocalizer node died during the replay (code {node.proc.returncode}); its "
                                  f"log ({node.log_path}) ends with:\n{node.log_tail()}")
            if m.topic != image_topic:
                publishers[m.topic].publish(m.data)
                continue
            stamp = stamp_to_ns(bag.deserialize(m).header.stamp)
            frame = FrameResult(stamp, time.monotonic_ns())
            publishers[m.topic].publish(m.data)
            frames.append(frame)
            if opt.lockstep and not recorder.wait_for(stamp, opt.frame_timeout, published=len(frames)):
                with recorder.cond:
                    finished = recorder.finished >= len(frames)
                if finished:
                    logger.info("no pose for the image at %s (the node's log or /diagnostics say why)", frame.name)
                else:
                    logger.warning("no answer for the image at %s within %.1f s", frame.name, opt.frame_timeout)
        # trailing answers: until all arrived or none came for tail_timeout seconds
        with recorder.cond:
            while True:
                missing = sum(f.stamp_ns not in recorder.answers for f in frames)
                quiet_since = max(recorder.last_ns, frames[-1].published_ns if frames else 0)
                left = opt.tail_timeout - (time.monotonic_ns() - quiet_since) * 1e-9
                if missing == 0 or left <= 0 or not node.alive():
                    break
                recorder.cond.wait(min(left, 0.5))
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)  # before the context goes: a thread left in rcl's wait aborts at exit
        ros.destroy_node()
        rclpy.shutdown(context=context)
    for frame in frames:
        answer = recorder.answers.get(frame.stamp_ns)
        if answer is not None:
            frame.pose, frame.received_ns = answer
    return frames, recorder


# --------------------------------------------------------------------------- metrics and outputs

def frame_errors(frames: list[FrameResult]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) translation errors (m) and (N,) rotation errors (deg) of the frames with ground truth,
    inf where the node gave no answer (glace-eval's error definitions)."""
    from glace_core.geometry import pose_errors

    t_errs, r_errs = [], []
    for f in frames:
        if f.gt is None:
            continue
        if f.pose is None:
            t_errs.append(np.inf)
            r_errs.append(np.inf)
        else:
            t, r = pose_errors(f.pose, f.gt)
            t_errs.append(float(t))
            r_errs.append(float(r))
    return np.array(t_errs, np.float64), np.array(r_errs, np.float64)


def latency_stats(frames: list[FrameResult]) -> dict:
    """p50/p90/max/mean latency in ms (publish → pose received) of the answered frames."""
    lat = np.array([f.latency_s for f in frames if f.latency_s is not None], np.float64) * 1e3
    if lat.size == 0:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "max_ms": None, "mean_ms": None}
    return {"count": int(lat.size), "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
            "max_ms": float(lat.max()), "mean_ms": float(lat.mean())}


def summarize(frames: list[FrameResult]) -> dict:
    """glace-eval's accuracy metrics over the frames with ground truth, plus answered fraction and
    latency."""
    from glace_core.geometry import accuracy_table

    t_errs, r_errs = frame_errors(frames)
    n = len(frames)
    answered = sum(f.pose is not None for f in frames)
    summary = {"frames": n, "answered": answered, "answered_fraction": answered / n if n else 0.0,
               "frames_with_gt": int(t_errs.size), "latency": latency_stats(frames)}
    summary["accuracy"] = accuracy_table(t_errs, r_errs) if t_errs.size else {}
    return summary


def write_outputs(frames: list[FrameResult], summary: dict, out: Path, bag_name: str) -> dict[str, str]:
    """The poses file, summary.json and the three plots into ``out``; returns their paths."""
    from glace_core.evaluation import poses_file_line
    from glace_core.io_utils import atomic_write_text
    from glace_ros import plots

    out.mkdir(parents=True, exist_ok=True)
    files = {"poses": str(out / f"poses_{bag_name}.txt"), "summary": str(out / "summary.json"),
             "trajectory_plot": str(out / "trajectory.png"), "error_cdf_plot": str(out / "error_cdf.png"),
             "error_over_time_plot": str(out / "error_over_time.png")}
    from glace_core.geometry import pose_errors

    lines = []
    for f in frames:
        if f.pose is None:
            continue
        t_err, r_err = pose_errors(f.pose, f.gt) if f.gt is not None else (np.nan, np.nan)
        lines.append(poses_file_line(f.name, f.pose, r_err, t_err, -1))
    atomic_write_text(files["poses"], "".join(line if line.endswith("\n") else line + "\n" for line in lines))

    with_gt = [f for f in frames if f.gt is not None]
    nan3 = np.full(3, np.nan)
    est = np.array([f.pose[:3, 3] if f.pose is not None else nan3 for f in with_gt]).reshape(-1, 3)
    gt = np.array([f.gt[:3, 3] for f in with_gt]).reshape(-1, 3)
    t_errs, r_errs = frame_errors(frames)
    t0 = with_gt[0].stamp_ns if with_gt else 0
    times = np.array([(f.stamp_ns - t0) * 1e-9 for f in with_gt])
    plots.plot_trajectory(est, gt, files["trajectory_plot"])
    plots.plot_error_cdf(t_errs, r_errs, files["error_cdf_plot"])
    plots.plot_error_over_time(times, t_errs, r_errs, files["error_over_time_plot"])
    summary = dict(summary, files=files)
    atomic_write_text(files["summary"], json.dumps(summary, indent=2, default=_json_default) + "\n")
    return files


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def replay_eval(bag_path: str | Path, options: ReplayOptions) -> ReplayResult:
    """Replay ``bag_path`` through a freshly started relocalizer node; see the module docstring."""
    opt = options
    opt.validate()
    bag_path = Path(bag_path)
    out = Path(opt.out) if opt.out else bag_path.parent / f"replay_{bag_path.name}"
    out.mkdir(parents=True, exist_ok=True)
    env = ros_environment()
    with BagReader(bag_path) as bag:
        image_topic = resolve_topic(bag, opt.image_topic, IMAGE_TYPES, "image")
        info_topic = resolve_topic(bag, opt.camera_info_topic, ("sensor_msgs/msg/CameraInfo",), "camera info")
        stamps = np.array(read_image_stamps(bag, image_topic), np.int64)
        if stamps.size == 0:
            raise BagError(f"bag {bag.path} has no messages on {image_topic}")
        gt_poses, gt_ok, gt_source = ground_truth(bag, stamps, opt.gt_topic, opt.gt_tf, opt.max_gt_gap)
        if not gt_ok.any():
            raise BagError(f"bag {bag.path}: no image has ground truth from {gt_source}")
        gt_by_stamp = {int(s): p for s, p, ok in zip(stamps, gt_poses, gt_ok) if ok}
        topics = [image_topic, info_topic] + ([t for t in ("/tf", "/tf_static") if t in bag.topics] if opt.replay_tf else [])
        compressed = bag.topics[image_topic].endswith("CompressedImage")
        params = node_parameters(opt, image_topic, info_topic, compressed)
        node = NodeProcess(opt.node_name, params, opt.node_params, env, out / "node.log")
        try:
            t0 = time.monotonic()
            frames, _ = _replay(bag, opt, topics, image_topic, info_topic, node, env)
            wall = time.monotonic() - t0
        finally:
            code = node.stop()
        logger.info("node exited with code %s", code)
    for f in frames:
        f.gt = gt_by_stamp.get(f.stamp_ns)
    summary = summarize(frames)
    summary.update(bag=str(bag_path), map=str(opt.map_path), ground_truth=gt_source, image_topic=image_topic,
                   camera_info_topic=info_topic, replay_wall_s=wall, node_parameters=params,
                   mode="lockstep" if opt.lockstep else ("as fast as possible" if opt.as_fast_as_possible
                                                         else f"rate {opt.rate:g}"),
                   options={k: v for k, v in asdict(opt).items()})
    files = write_outputs(frames, summary, out, bag_path.name)
    summary["files"] = files
    return ReplayResult(frames, summary, out, files)


def format_table(summary: dict) -> str:
    """The metrics of a replay as a plain-text table."""
    acc = summary.get("accuracy", {})
    lat = summary["latency"]
    rows = [("frames replayed", f"{summary['frames']}"),
            ("frames answered", f"{summary['answered']} ({100 * summary['answered_fraction']:.1f}%)"),
            ("frames with ground truth", f"{summary['frames_with_gt']}")]
    rows += [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in acc.items()]
    fmt = lambda v: "n/a" if v is None else f"{v:.1f} ms"  # noqa: E731
    rows += [("latency p50", fmt(lat["p50_ms"])), ("latency p90", fmt(lat["p90_ms"])), ("latency max", fmt(lat["max_ms"]))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glace-replay-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = ReplayOptions(map_path="")
    p.add_argument("bag", help="rosbag2 folder (or .mcap/.db3 file)")
    p.add_argument("--map", dest="map_path", required=True, help="map file (a GLACE head or an ensemble map)")
    p.add_argument("--encoder", dest="encoder_path", default=None, help="encoder weights (default: the node's)")
    p.add_argument("--out", default=None, help="output folder (default: replay_<bag> beside the bag)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--rate", type=float, default=d.rate, help="replay speed, factor of the bag's time")
    speed.add_argument("--as-fast-as-possible", action="store_true", help="publish without pauses")
    speed.add_argument("--lockstep", action="store_true",
                       help="publish each image after the node answered the previous one (or --frame-timeout)")
    p.add_argument("--frame-timeout", type=float, default=d.frame_timeout, help="lockstep: seconds per answer")
    p.add_argument("--image-topic", default=None, help="image topic (default: the bag's only one)")
    p.add_argument("--camera-info-topic", default=None, help="CameraInfo topic (default: the bag's only one)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", default=None, help=f"ground-truth pose topic (default: {DEFAULT_GT_TOPIC})")
    gt.add_argument("--gt-tf", nargs=2, metavar=("MAP", "CAMERA_GT"), default=None,
                    help="ground truth as the TF transform MAP -> CAMERA_GT in the bag")
    p.add_argument("--no-tf", dest="replay_tf", action="store_false", help="do not publish the bag's /tf, /tf_static")
    p.add_argument("--hypotheses", "-hyps", type=int, default=None, help="RANSAC hypotheses (default: the node's)")
    p.add_argument("--threshold", "-t", type=float, default=None, help="RANSAC inlier threshold, px")
    p.add_argument("--inlieralpha", "-ia", type=float, default=None, help="RANSAC soft inlier count alpha")
    p.add_argument("--maxpixelerror", "-maxerrr", type=float, default=None, help="RANSAC reprojection error clamp, px")
    p.add_argument("--seed", type=int, default=None, help="RANSAC seed")
    p.add_argument("--min-inlier-count", type=int, default=None,
                   help="poses with fewer inliers are not published (default: the node's; 0: every pose, "
                        "as glace-eval reports them)")
    p.add_argument("--ensemble-candidates", dest="ensemble_candidates", type=int, default=None,
                   help="heads of an ensemble map tried per frame (default: the node's)")
    p.add_argument("--node-params", default=None, help="YAML parameter file for the node (flags override it)")
    p.add_argument("--node-name", default=d.node_name, help="name of the started node")
    p.add_argument("--startup-timeout", type=float, default=d.startup_timeout, help="seconds for the node to start")
    p.add_argument("--tail-timeout", type=float, default=d.tail_timeout, help="seconds to wait for trailing answers")
    p.add_argument("--max-gt-gap", type=float, default=d.max_gt_gap, help="seconds of ground-truth gap bridged")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fields = {k: v for k, v in vars(args).items() if k != "bag"}
    if fields["gt_tf"] is not None:
        fields["gt_tf"] = tuple(fields["gt_tf"])
    try:
        result = replay_eval(args.bag, ReplayOptions(**fields))
    except (BagError, ReplayError, ValueError, FileNotFoundError) as exc:
        print(f"glace-replay-eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result.summary))
    print(f"results in {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
