"""`glace-replay-eval`: replay a rosbag2 through the live relocalizer node and score its poses.

1. Reads the ground truth of every image from the bag (a pose topic, or a TF pair such as
   map → camera_gt), matched to the images by header stamp.
2. Starts the relocalizer node as a separate process (``glace_ros.replay_node``: reliable image
   subscriptions, a shared-memory transport profile, whatever the caller's shell) with the map, the
   RANSAC options and the bag's topics as parameters, and waits until its subscriptions are matched
   with our publishers and its pose publisher with our subscriber.
3. Publishes the bag's raw CDR bytes on the recorded topics (images, camera info, /tf, /tf_static)
   with reliable publishers (``glace_ros.replay_player``): at ``rate`` x the bag's speed, one image
   at a time (``lockstep``, re-sending an image the node did not receive), as fast as the node
   answers without drops (``as_fast_as_possible``), or all at once (``flood``, a stress test).
4. Records the node's PoseStamped answers (stamped with the image stamp) and computes glace-eval's
   metrics (:mod:`glace_core.evaluation`) over all frames with ground truth (a frame without an
   answer counts as a failure with infinite error), plus the fraction of frames answered and the
   latency from publishing an image to receiving its pose. Fewer than 90 % answered is an error
   (exit code 3) unless ``allow_drops``.
5. Writes into OUT: ``poses_<bag>.txt`` (glace-eval format), ``summary.json``, ``trajectory.png``,
   ``error_cdf.png``, ``error_over_time.png`` and the node's log ``node.log``.

SIGINT and SIGTERM stop the replay and the node it started.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from glace_core.ensemble_fusion import ENSEMBLE_FUSIONS
from glace_ros.bag_io import BagError, BagReader
from glace_ros.bag_to_scene import IMAGE_TYPES, POSE_TYPES, read_pose_topic, resolve_topic
from glace_ros.relocalizer_params import PARAMETERS_BY_NAME
from glace_ros.replay_node import NodeProcess, ros_environment
from glace_ros.replay_player import BagPlayer, Recorder, ReplayError, message_class
from glace_ros.replay_results import FrameResult, format_table, summarize, write_outputs
from glace_ros.stamps import stamp_to_ns
from glace_ros.tf_graph import TfGraph

logger = logging.getLogger(__name__)

DEFAULT_GT_TOPIC = "/ground_truth/pose"
MIN_ANSWERED = 0.9  # a replay answering fewer frames fails unless allow_drops
DIAGNOSTICS_WAIT_S = 2.5  # for the node's last /diagnostics (published at 1 Hz) after its last pose


@dataclass
class ReplayOptions:
    """Options of one replay; CLI flags map one-to-one onto the fields."""

    map_path: str  # GLACE head file (with its .json sidecar)
    encoder_path: str | None = None  # encoder weights; None: the node's default
    out: str | None = None  # output folder; None: replay_<bag name> beside the bag
    rate: float = 1.0  # replay speed as a factor of the bag's time
    as_fast_as_possible: bool = False  # as fast as the node answers, without drops (ignores rate)
    lockstep: bool = False  # publish the next image only after the node answered the last one
    flood: bool = False  # stress test: publish everything at once; the node drops what it cannot keep up with
    frame_timeout: float = 30.0  # lockstep / as fast as possible: seconds to wait for one answer
    resend_timeout: float = 3.0  # lockstep / as fast as possible: re-send an image not received after this
    allow_drops: bool = False  # do not fail when fewer than 90 % of the frames are answered
    quality_gate: bool = True  # False: the node publishes every pose RANSAC finds, as glace-eval reports them
    image_topic: str | None = None  # None: the bag's only Image/CompressedImage topic
    camera_info_topic: str | None = None  # None: the bag's only CameraInfo topic
    gt_topic: str | None = None  # ground-truth pose topic; default /ground_truth/pose when present
    gt_tf: tuple[str, str] | None = None  # (map frame, ground-truth camera frame) in the bag's TF
    replay_tf: bool = True  # also publish the bag's /tf and /tf_static
    hypotheses: int | None = None  # node's RANSAC options (RansacOptions' names); None: the node's defaults
    threshold: float | None = None
    inlier_alpha: float | None = None
    max_reprojection_error: float | None = None
    seed: int | None = None
    min_inlier_count: int | None = None  # node's publishing floor; None: the node's default (0 answers all)
    ensemble_candidates: int | None = None  # heads of an ensemble map tried per frame; None: the node's default
    early_accept_ratio: float | None = None  # the node's early accept of the best-routed head; None: its default
    ensemble_fusion: str | None = None  # "union" or "best": how the node makes one pose of the candidates; None: its default
    keyframe_refinement: bool | None = None  # the node's refinement with the map's keyframes; None: its default (on)
    node_params: str | None = None  # YAML parameter file for the node (flags above override it)
    node_name: str = "glace_relocalizer"
    startup_timeout: float = 180.0  # seconds for the node to load its map and match the topics
    tail_timeout: float = 20.0  # seconds to wait for answers after the last image
    max_gt_gap: float = 0.1  # seconds: ground truth further from an image stamp is not interpolated

    @property
    def mode(self) -> str:
        """The replay_player mode."""
        return ("lockstep" if self.lockstep else "fast" if self.as_fast_as_possible else "flood" if self.flood
                else "rate")

    def validate(self) -> None:
        if sum((self.lockstep, self.as_fast_as_possible, self.flood)) > 1:
            raise ValueError("give at most one of lockstep, as_fast_as_possible and flood")
        if not (self.rate > 0 and np.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive factor of the bag's speed, got {self.rate}")
        if self.gt_topic is not None and self.gt_tf is not None:
            raise ValueError("give at most one ground-truth source: --gt-topic or --gt-tf")
        for name in ("frame_timeout", "resend_timeout", "startup_timeout", "tail_timeout", "max_gt_gap"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not Path(self.map_path).is_file():
            raise ValueError(f"map file {self.map_path} does not exist")
        if self.node_params is not None and not Path(self.node_params).is_file():
            raise ValueError(f"node parameter file {self.node_params} does not exist")


@dataclass
class ReplayResult:
    frames: list[FrameResult]
    summary: dict
    out: Path
    files: dict[str, str] = field(default_factory=dict)


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
    graph = TfGraph.from_bag(bag, max_gap_s)
    try:
        poses, ok = graph.lookup_many(gt_tf[0], gt_tf[1], stamps_ns)
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
    for key in FORWARDED_PARAMETERS:  # the node's parameter names
        value = getattr(opt, key)
        if value is not None:
            params[key] = value
    if not opt.quality_gate:
        params.update({name: 0 if isinstance(PARAMETERS_BY_NAME[name].default, int) else 0.0 for name in GATE_PARAMETERS})
    if opt.mode != "flood":  # the replay must not lose frames: reliable, and a queue for the frames in flight
        params.update(image_qos="reliable", frame_queue=4)
    return params


#: the node's quality gate (all 0: off)
GATE_PARAMETERS = ("min_inlier_count", "min_inlier_ratio", "max_position_stddev", "max_rotation_stddev",
                   "max_jump_distance", "max_jump_angle")

#: ReplayOptions fields passed to the node under the same name (when not None)
FORWARDED_PARAMETERS = ("hypotheses", "threshold", "inlier_alpha", "max_reprojection_error", "seed",
                        "min_inlier_count", "ensemble_candidates", "early_accept_ratio", "ensemble_fusion",
                        "keyframe_refinement")


def _replay(bag: BagReader, opt: ReplayOptions, topics: list[str], image_topic: str, info_topic: str,
            node: NodeProcess, env: dict) -> tuple[list[FrameResult], Recorder]:
    """Publish the bag into a live graph shared with ``node``; returns the published frames."""
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR", "FASTDDS_DEFAULT_PROFILES_FILE"):
        if key in env:  # rclpy and Fast DDS read them when this process's participant starts
            os.environ.setdefault(key, env[key])
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseStamped
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
    recorder = Recorder(opt.node_name)
    player = None
    try:
        pose_topic = f"/{opt.node_name}/pose"
        sub = ros.create_subscription(PoseStamped, pose_topic, recorder.on_pose, pose_qos(100))
        ros.create_subscription(DiagnosticArray, "/diagnostics", recorder.on_diagnostics, pose_qos(10))
        publishers = {}
        for topic in topics:
            static = topic == "/tf_static"
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100 if static else 10,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if static else DurabilityPolicy.VOLATILE)
            publishers[topic] = ros.create_publisher(message_class(bag.topics[topic]), topic, qos)
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
        logger.info("node ready; replaying %s (%s)", ", ".join(topics), opt.mode)
        player = BagPlayer(publishers, image_topic, info_topic, recorder, node.alive, opt.mode, opt.rate,
                           opt.frame_timeout, opt.resend_timeout)
        try:
            player.play(bag.messages(topics), lambda m: stamp_to_ns(bag.deserialize(m).header.stamp))
        except ReplayError as exc:
            raise ReplayError(f"{exc} (code {node.proc.returncode}); its log ({node.log_path}) ends with:\n"
                              f"{node.log_tail()}") from exc
        player.wait_tail(opt.tail_timeout)
        if not recorder.wait_final_diagnostics(DIAGNOSTICS_WAIT_S):
            logger.warning("no /diagnostics from the node after its last pose within %.1f s: its counts in the "
                           "summary may miss the last frames", DIAGNOSTICS_WAIT_S)
    finally:
        executor.shutdown(timeout_sec=2.0)
        spinner.join(timeout=5.0)  # before the context goes: a thread left in rcl's wait aborts at exit
        ros.destroy_node()
        rclpy.shutdown(context=context)
    frames = [FrameResult(f.stamp_ns, f.published_ns) for f in (player.frames if player else [])]
    for frame in frames:
        answer = recorder.answers.get(frame.stamp_ns)
        if answer is not None:
            frame.pose, frame.received_ns = answer
    if player is not None and player.resent:
        logger.warning("%d image(s) were re-sent because the node had not received them", player.resent)
    return frames, recorder


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
            frames, recorder = _replay(bag, opt, topics, image_topic, info_topic, node, env)
            wall = time.monotonic() - t0
        finally:
            code = node.stop()
        logger.info("node exited with code %s", code)
    for f in frames:
        f.gt = gt_by_stamp.get(f.stamp_ns)
    summary = summarize(frames)
    summary["node"] = {k: v for k, v in recorder.diagnostics.items()
                       if k.startswith(("frames_", "rejected_")) and k != "frames_rejected"}
    summary.update(bag=str(bag_path), map=str(opt.map_path), ground_truth=gt_source, image_topic=image_topic,
                   camera_info_topic=info_topic, replay_wall_s=wall, node_parameters=params,
                   mode={"lockstep": "lockstep", "fast": "as fast as possible", "flood": "flood"}.get(
                       opt.mode, f"rate {opt.rate:g}"),
                   options={k: v for k, v in asdict(opt).items()})
    files = write_outputs(frames, summary, out, bag_path.name)
    summary["files"] = files
    return ReplayResult(frames, summary, out, files)


def build_parser() -> argparse.ArgumentParser:
    from glace_core.cli.evaluate import add_ransac_arguments

    p = argparse.ArgumentParser(prog="glace-replay-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = ReplayOptions(map_path="")
    p.add_argument("bag", help="rosbag2 folder (or .mcap/.db3 file)")
    p.add_argument("--map", dest="map_path", required=True, help="map file (a GLACE head or an ensemble map)")
    p.add_argument("--encoder", dest="encoder_path", default=None, help="encoder weights (default: the node's)")
    p.add_argument("--out", default=None, help="output folder (default: replay_<bag> beside the bag)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--rate", type=float, default=d.rate, help="replay speed, factor of the bag's time")
    speed.add_argument("--as-fast-as-possible", action="store_true",
                       help="as fast as the node answers, without drops (two images in flight)")
    speed.add_argument("--lockstep", action="store_true",
                       help="publish each image after the node answered the previous one")
    speed.add_argument("--flood", action="store_true",
                       help="stress test: publish every message at once; the node drops what it cannot keep up with")
    p.add_argument("--frame-timeout", type=float, default=d.frame_timeout,
                   help="lockstep / as fast as possible: seconds to wait for one answer")
    p.add_argument("--resend-timeout", type=float, default=d.resend_timeout,
                   help="lockstep / as fast as possible: seconds after which an image the node did not receive "
                        "is published again")
    p.add_argument("--allow-drops", action="store_true",
                   help=f"do not fail when fewer than {100 * MIN_ANSWERED:.0f} %% of the frames are answered")
    p.add_argument("--image-topic", default=None, help="image topic (default: the bag's only one)")
    p.add_argument("--camera-info-topic", default=None, help="CameraInfo topic (default: the bag's only one)")
    gt = p.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", default=None, help=f"ground-truth pose topic (default: {DEFAULT_GT_TOPIC})")
    gt.add_argument("--gt-tf", nargs=2, metavar=("MAP", "CAMERA_GT"), default=None,
                    help="ground truth as the TF transform MAP -> CAMERA_GT in the bag")
    p.add_argument("--no-tf", dest="replay_tf", action="store_false", help="do not publish the bag's /tf, /tf_static")
    add_ransac_arguments(p, defaults=False, only=("hypotheses", "threshold", "inlier_alpha",
                                                  "max_reprojection_error", "seed"))
    p.add_argument("--min-inlier-count", type=int, default=None,
                   help="poses with fewer inliers are not published (default: the node's; 0: every pose, "
                        "as glace-eval reports them)")
    p.add_argument("--no-quality-gate", dest="quality_gate", action="store_false",
                   help="switch the node's quality gate off (min_inlier_count, min_inlier_ratio, max_*_stddev, "
                        "max_jump_*): every pose RANSAC finds is published, as glace-eval reports them")
    p.add_argument("--ensemble-candidates", dest="ensemble_candidates", type=int, default=None,
                   help="heads of an ensemble map tried per frame (default: the node's)")
    p.add_argument("--early-accept-ratio", dest="early_accept_ratio", type=float, default=None,
                   help="keep the best-routed head's pose without running the other candidates when its inliers "
                        "are at least this share of the cells (0: every candidate; default: the node's)")
    p.add_argument("--ensemble-fusion", dest="ensemble_fusion", choices=ENSEMBLE_FUSIONS, default=None,
                   help="how the candidate heads that run become one pose: 'union' (one RANSAC over all their "
                        "cells) or 'best' (the most inliers; default: the node's)")
    p.add_argument("--keyframe-refinement", dest="keyframe_refinement", choices=("true", "false"), default=None,
                   help="refine poses with the map's keyframes file (<map>.keyframes.npz; default: the node's, on)")
    p.add_argument("--node-params", default=None, help="YAML parameter file for the node (flags override it)")
    p.add_argument("--node-name", default=d.node_name, help="name of the started node")
    p.add_argument("--startup-timeout", type=float, default=d.startup_timeout, help="seconds for the node to start")
    p.add_argument("--tail-timeout", type=float, default=d.tail_timeout, help="seconds to wait for trailing answers")
    p.add_argument("--max-gt-gap", type=float, default=d.max_gt_gap, help="seconds of ground-truth gap bridged")
    return p


def _stop_on_signals() -> None:
    """SIGTERM (and SIGINT) end the replay through KeyboardInterrupt, so the node is stopped."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fields = {k: v for k, v in vars(args).items() if k != "bag"}
    if fields["gt_tf"] is not None:
        fields["gt_tf"] = tuple(fields["gt_tf"])
    if fields["keyframe_refinement"] is not None:
        fields["keyframe_refinement"] = fields["keyframe_refinement"] == "true"
    _stop_on_signals()
    try:
        result = replay_eval(args.bag, ReplayOptions(**fields))
    except (BagError, ReplayError, ValueError, FileNotFoundError) as exc:
        print(f"glace-replay-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glace-replay-eval: interrupted; the node was stopped", file=sys.stderr)
        return 130
    s = result.summary
    print(format_table(s))
    print(f"results in {result.out}")
    if s["answered_fraction"] < MIN_ANSWERED and not args.allow_drops:
        print(f"glace-replay-eval: error: only {s['answered']} of {s['frames']} frames were answered "
              f"({100 * s['answered_fraction']:.1f} % < {MIN_ANSWERED:.0%}); the accuracy above covers the answered "
              "frames only. See node.log; pass --allow-drops to accept this", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
