"""The relocalizer node's parameters: the single definition of names, defaults, ranges and descriptions.

The node declares exactly these parameters (``glace_ros.relocalizer_node``), ``config/relocalizer.yaml``
ships exactly these keys with these defaults, and the README table lists them; tests check all three
against :data:`PARAMETERS`. No ROS import here, so the table can be read anywhere. RANSAC defaults are ``RansacOptions``' (the
native solver's) and the parameter names are its field names.

Parameters marked ``read_only`` configure the start-up (the map, the encoder, the subscriptions) and
cannot change while the node runs; every other one takes effect on the next frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Mapping

from glace_core.cpu_features import PRECISIONS
from glace_core.localizer import (DEFAULT_EARLY_ACCEPT_RATIO, DEFAULT_ENSEMBLE_FUSION, ENSEMBLE_FUSIONS, GLOBAL_MODES,
                                  LocalizerOptions, RansacOptions, RefinementOptions)
from glace_core.map_predictor import DEFAULT_CANDIDATES
from glace_ros.output_policy import INITIALPOSE_MODES, GateLimits
from glace_ros.tf_output import TF_MODES

__all__ = ["ParamSpec", "PARAMETERS", "PARAMETERS_BY_NAME", "RelocalizerParams", "validate_parameter",
           "compressed_topic", "NODE_NAME", "yaml_document", "markdown_table"]

#: Default node name; the YAML file's top-level key.
NODE_NAME = "glace_relocalizer"


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: its default (whose type is the parameter's type) and its constraints."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] | None = None  # allowed string values
    minimum: float | None = None  # inclusive lower bound (numbers)
    maximum: float | None = None  # inclusive upper bound (numbers)
    read_only: bool = False  # only settable at start-up (launch file / --ros-args / YAML)

    @property
    def type_name(self) -> str:
        """"bool", "int", "double", "string" or "int[]" (ROS parameter type names)."""
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "double"
        if isinstance(self.default, str):
            return "string"
        if isinstance(self.default, (tuple, list)) and all(isinstance(v, int) for v in self.default):
            return "int[]"
        raise TypeError(f"parameter {self.name}: unsupported default {self.default!r}")

    def constraint_text(self) -> str:
        """Human-readable constraints, for descriptors and the README table."""
        def num(v: float) -> str:
            return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"

        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(repr(c) for c in self.choices))
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"in [{num(self.minimum)}, {num(self.maximum)}]")
        elif self.minimum is not None:
            parts.append(f">= {num(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"<= {num(self.maximum)}")
        if self.read_only:
            parts.append("read-only after start-up")
        return "; ".join(parts)


_RANSAC = RansacOptions()  # the native solver's defaults

#: Every parameter of the node, in the order of config/relocalizer.yaml.
PARAMETERS: tuple[ParamSpec, ...] = (
    # the map and the networks
    ParamSpec("map_path", "", "map file (.pt: a GLACE head or an ensemble map) of the scene, with its "
              "<map>.json sidecar; required ('~' is expanded). Settable at run time: the new map is loaded and "
              "checked, then swapped in at the next frame; a map that fails to load is refused and the old one kept"),
    ParamSpec("encoder_path", "", "encoder weights file or named encoder ('xfeat', 'ace-random:<seed>'); "
              "empty: the encoder the map's sidecar names, else the shipped default", read_only=True),
    ParamSpec("device", "auto", "where the networks run: 'auto' (CUDA when available), 'cpu' or 'cuda'",
              choices=("auto", "cpu", "cuda"), read_only=True),
    ParamSpec("precision", "auto", "CPU inference precision: 'auto' (bf16 where the CPU has AVX512_BF16 or AMX, "
              "else fp32), 'fp32', or 'bf16' (encoder and heads in bf16, the heads' last layer and XFeat's first "
              "blocks and last layer in fp32; on a CPU without bf16 fp32 runs, with a warning); CUDA runs fp16 "
              "autocast", choices=PRECISIONS,
              read_only=True),
    # inputs
    ParamSpec("image_topic", "/camera/image_raw", "sensor_msgs/Image topic; with use_compressed the "
              "CompressedImage topic (\"/compressed\" is appended unless the name already ends with it)",
              read_only=True),
    ParamSpec("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic of the images",
              read_only=True),
    ParamSpec("use_compressed", False, "subscribe to sensor_msgs/CompressedImage instead of Image", read_only=True),
    ParamSpec("image_qos", "sensor_data", "QoS of the image and CameraInfo subscriptions: 'sensor_data' (best "
              "effort, keep last 5: stale frames are dropped) or 'reliable' (keep last 5, reliable: a tool that must "
              "not lose frames, such as glace-replay-eval)", choices=("sensor_data", "reliable"), read_only=True),
    ParamSpec("image_resolution", 0, "network input height in pixels (the shorter image side is resized "
              "to it, intrinsics scaled alike); 0: the map's training resolution from its sidecar, else 480",
              minimum=0, maximum=4096),
    ParamSpec("match_focal", True, "with image_resolution 0: an image whose focal length differs from the map's "
              "mapping frames' by more than 10 % is resized so that the two match at network resolution (the "
              "encoder sees textures at their mapped scale; maps whose sidecar records the focal length). Costs "
              "time when the camera's focal length is shorter (a wider view is upscaled, at most 2x and within "
              "max_input_pixels)"),
    ParamSpec("frame_queue", 1, "images waiting for the worker: 1 keeps only the newest (a live robot: latency "
              "stays bounded, stale frames are dropped and counted); more queues them in order, dropping the oldest "
              "when full (glace-replay-eval, which keeps at most this many in flight and loses none)", minimum=1,
              maximum=100, read_only=True),
    ParamSpec("max_input_pixels", 614400, "network input pixels (after resizing the shorter side to "
              "image_resolution) an image may give; larger ones (extreme aspect ratios) are rejected with a "
              "message. Compressed images larger than 16x this are rejected from their header, before decoding",
              minimum=4096, maximum=100_000_000),
    ParamSpec("camera_info_tolerance", 0.05, "seconds: a CameraInfo this close to the image stamp is used, "
              "otherwise the latest one of the image's frame", minimum=0.0, maximum=3600.0, read_only=True),
    # global descriptor
    ParamSpec("global_checkpoint", "", "R2Former checkpoint (CVPR23_DeitS_Rerank.pth); empty: heads with global "
              "input get zero global features (with a warning)", read_only=True),
    ParamSpec("global_mode", "background", "when to compute the global descriptor: 'every_frame', 'every_n' "
              "(reuse it for global_every_n frames), 'background' (default: on a low-priority thread of its own, "
              "at most every global_every_n frames; frames use the latest finished descriptor and never wait for "
              "it, except the first frame, which computes its own; R2Former at 480x640 costs ~2x the encoder + head "
              "on 2 CPU cores, BENCHMARKS.md 'Inference (CPU)') or 'off' (zeros)", choices=GLOBAL_MODES),
    ParamSpec("global_every_n", 5, "frames a global descriptor is reused for in 'every_n' mode; the least number "
              "of frames between two background computations in 'background' mode", minimum=1, maximum=100000),
    ParamSpec("global_resolution", (480, 640), "(height, width) the global descriptor's input is resized to; "
              "multiples of 16", read_only=True),
    # RANSAC
    ParamSpec("hypotheses", _RANSAC.hypotheses, "RANSAC pose hypotheses per frame", minimum=1, maximum=1000000),
    ParamSpec("threshold", _RANSAC.threshold, "RANSAC inlier threshold, pixels", minimum=1e-3, maximum=1e6),
    ParamSpec("inlier_alpha", _RANSAC.inlier_alpha, "scale of the soft inlier count score", minimum=1e-6,
              maximum=1e9),
    ParamSpec("max_reprojection_error", _RANSAC.max_reprojection_error, "pixels: reprojection errors are clamped "
              "to it when scoring", minimum=1e-3, maximum=1e9),
    ParamSpec("max_candidates", _RANSAC.max_candidates, "RANSAC: P3P candidates drawn at most per frame and head "
              "(the stopping rule at 0.9999 confidence usually stops earlier; a badly routed head runs to it)",
              minimum=1, maximum=10000000),
    ParamSpec("seed", _RANSAC.seed, "RANSAC random seed (the same frame and seed give the same pose)", minimum=0,
              maximum=2 ** 31 - 1),
    ParamSpec("ensemble_candidates", DEFAULT_CANDIDATES, "ensemble maps (glace-train --num_clusters, the cpu "
              "preset): heads run per frame, best-routed first (but see early_accept_ratio), made one pose by "
              "ensemble_fusion (0: every head; BENCHMARKS.md 'Encoders')", minimum=0, maximum=1024),
    ParamSpec("early_accept_ratio", DEFAULT_EARLY_ACCEPT_RATIO, "ensemble maps: the best-routed head's pose is kept "
              "without running the other candidates when its RANSAC inliers are at least this share of the cells "
              "(0: every candidate always runs; BENCHMARKS.md 'Early accept')", minimum=0.0, maximum=1.0),
    ParamSpec("ensemble_fusion", DEFAULT_ENSEMBLE_FUSION, "ensemble maps, when more than one candidate head runs: "
              "'union' (default: one RANSAC over the cells of every candidate) or 'best' (each candidate solved "
              "alone, the most inliers wins, ACE's rule; BENCHMARKS.md 'Fused candidates')",
              choices=ENSEMBLE_FUSIONS),
    ParamSpec("keyframe_refinement", True, "maps with a keyframes file (<map>.keyframes.npz, glace-train's cpu "
              "presets, glace-keyframes): refine each pose by matching XFeat keypoints to the mapping frames nearest "
              "to it (millimetres instead of centimetres, 12-20 ms a frame at 480x640 on 2 cores; BENCHMARKS.md "
              "'Keyframe refinement')"),
    # quality gate
    ParamSpec("min_inlier_count", 100, "poses with fewer RANSAC inliers are not published", minimum=0,
              maximum=10 ** 9),
    ParamSpec("min_inlier_ratio", 0.0, "poses whose inliers are a smaller share of the network's cells are not "
              "published (0: off)", minimum=0.0, maximum=1.0),
    ParamSpec("max_position_stddev", 1.0, "metres: poses whose covariance gives a larger position standard "
              "deviation (largest axis) are not published (0: off)", minimum=0.0, maximum=1e6),
    ParamSpec("max_rotation_stddev", 10.0, "degrees: poses whose covariance gives a larger rotation standard "
              "deviation are not published (0: off)", minimum=0.0, maximum=360.0),
    ParamSpec("max_jump_distance", 0.0, "metres: poses further than this from the pose odometry predicts (the "
              "last correction) are not published (0: off; a ~/localize request accepts the next pose anyway)",
              minimum=0.0, maximum=1e6),
    ParamSpec("max_jump_angle", 0.0, "degrees: as max_jump_distance, for the rotation (0: off)", minimum=0.0,
              maximum=360.0),
    # frames and TF
    ParamSpec("map_frame", "map", "frame_id of the published poses (the map's frame)", read_only=True),
    ParamSpec("odom_frame", "odom", "odometry frame (REP-105): the node publishes map -> odom_frame in tf_mode "
              "'odom' and reads odom -> camera from /tf", read_only=True),
    ParamSpec("base_frame", "base_link", "robot frame whose pose goes to ~/base_pose and /initialpose (base_frame "
              "-> camera looked up in TF, usually the URDF's static chain)", read_only=True),
    ParamSpec("camera_frame", "", "the camera's optical frame in TF; empty: the image's header.frame_id",
              read_only=True),
    ParamSpec("tf_mode", "odom", "'odom': REP-105 map -> odom_frame, republished at transform_publish_rate; "
              "'camera': map -> tf_child_frame (a frame of its own, never one with another parent); 'none': "
              "nothing on /tf", choices=TF_MODES, read_only=True),
    ParamSpec("tf_child_frame", "glace_camera", "the frame tf_mode 'camera' publishes (map -> it); it must not "
              "have a parent on /tf already", read_only=True),
    ParamSpec("transform_publish_rate", 20.0, "Hz at which map -> odom is republished with the latest correction "
              "(tf_mode 'odom')", minimum=0.1, maximum=1000.0, read_only=True),
    ParamSpec("transform_tolerance", 0.1, "seconds map -> odom is future-dated by (stamp = now + this), so that "
              "lookups at 'now' succeed between updates", minimum=0.0, maximum=60.0),
    ParamSpec("odom_tolerance", 0.1, "seconds: odom -> camera is interpolated at the image stamp, waiting up to "
              "this long for odometry after it; a frame whose newest odometry is older than this gives no map -> "
              "odom correction (counted as stale_odom)", minimum=0.0, maximum=10.0),
    # outputs
    ParamSpec("initialpose_mode", "off", "/initialpose (Nav2 AMCL, the pose of base_frame): 'off', 'once' (the "
              "first good pose after start and after each ~/localize request) or 'on_jump' (when the estimate "
              "departs from the odometry-predicted pose by initialpose_jump_distance / _angle)",
              choices=INITIALPOSE_MODES, read_only=True),
    ParamSpec("initialpose_jump_distance", 0.5, "metres: jump that sends /initialpose in mode 'on_jump'",
              minimum=0.0, maximum=1e6),
    ParamSpec("initialpose_jump_angle", 15.0, "degrees: jump that sends /initialpose in mode 'on_jump'",
              minimum=0.0, maximum=360.0),
    ParamSpec("publish_point_cloud", False, "publish the predicted scene coordinates as PointCloud2 on "
              "~/scene_coordinates", read_only=True),
    ParamSpec("on_demand", False, "localize only when asked through the ~/localize service (saves CPU on robots "
              "that relocalize only when lost)"),
    ParamSpec("localize_timeout", 10.0, "seconds ~/localize waits for a localized frame before it answers "
              "failure", minimum=0.1, maximum=3600.0),
)

PARAMETERS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def compressed_topic(image_topic: str) -> str:
    """The CompressedImage topic for ``image_topic``: image_transport's ``<base>/compressed``."""
    topic = image_topic.rstrip("/")
    return topic if topic.endswith("/compressed") else topic + "/compressed"


def _is_topic_name(text: str) -> bool:
    return bool(text) and not any(c.isspace() for c in text) and "//" not in text


def validate_parameter(name: str, value: Any) -> str | None:
    """None if ``value`` is valid for parameter ``name``, else the reason (a sentence naming both)."""
    spec = PARAMETERS_BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    kind = spec.type_name
    if kind == "bool":
        if not isinstance(value, bool):
            return f"{name} must be a bool, got {value!r}"
        return None
    if kind in ("int", "double"):
        ok_type = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type:
            return f"{name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
        if not math.isfinite(float(value)):
            return f"{name} must be finite, got {value!r}"
        if spec.minimum is not None and value < spec.minimum:
            return f"{name} must be >= {spec.minimum:g}, got {value!r}"
        if spec.maximum is not None and value > spec.maximum:
            return f"{name} must be <= {spec.maximum:g}, got {value!r}"
        return None
    if kind == "int[]":
        values = list(value) if isinstance(value, (list, tuple)) else None
        if name == "global_resolution":
            if (values is None or len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                             and v > 0 and v % 16 == 0 for v in values)):
                return f"global_resolution must be [height, width], positive multiples of 16, got {value!r}"
        return None
    if not isinstance(value, str):
        return f"{name} must be a string, got {value!r}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}; got {value!r}"
    if name in ("image_topic", "camera_info_topic") and not _is_topic_name(value):
        return f"{name} must be a topic name, got {value!r}"
    if name in ("map_frame", "odom_frame", "tf_child_frame") and not value.strip():
        return f"{name} must not be empty"
    return None


def _from_mapping(cls, values: Mapping[str, Any]) -> "RelocalizerParams":
    """Validated params from a name -> value mapping (missing names keep their defaults).

    Raises ValueError naming every invalid or unknown entry.
    """
    errors = [reason for name, value in values.items() if (reason := validate_parameter(name, value))]
    if errors:
        raise ValueError("invalid relocalizer parameters: " + "; ".join(errors))
    converted = {}
    for name, value in values.items():
        kind = PARAMETERS_BY_NAME[name].type_name
        converted[name] = (float(value) if kind == "double" else
                           tuple(int(v) for v in value) if kind == "int[]" else value)
    return cls(**converted)


def _replace(self, **changes: Any) -> "RelocalizerParams":
    """A copy with ``changes`` applied and validated."""
    current = {f.name: getattr(self, f.name) for f in fields(self)}
    current.update(changes)
    return RelocalizerParams.from_mapping(current)


def _localizer_options(self) -> LocalizerOptions:
    """The per-frame options of ``glace_core.localizer.Localizer`` these parameters give."""
    ransac = RansacOptions(**{f.name: getattr(self, f.name) for f in fields(RansacOptions)
                              if f.name in PARAMETERS_BY_NAME})
    return LocalizerOptions(image_resolution=self.image_resolution, ensemble_candidates=self.ensemble_candidates,
                            early_accept_ratio=self.early_accept_ratio, ensemble_fusion=self.ensemble_fusion,
                            global_mode=self.global_mode,
                            global_every_n=self.global_every_n, ransac=ransac,
                            max_input_pixels=self.max_input_pixels, precision=self.precision,
                            match_focal=self.match_focal,
                            refinement=RefinementOptions(enabled=bool(self.keyframe_refinement)))


def _gate_limits(self) -> GateLimits:
    """The quality gate's limits."""
    return GateLimits(**{f.name: getattr(self, f.name) for f in fields(GateLimits)})


#: Typed values of every parameter, one field per entry of :data:`PARAMETERS` with its default
#: (generated from the table, so the two cannot differ).
RelocalizerParams = make_dataclass(
    "RelocalizerParams",
    [(spec.name, type(spec.default), field(default=spec.default)) for spec in PARAMETERS],
    namespace={"from_mapping": classmethod(_from_mapping), "replace": _replace,
               "localizer_options": _localizer_options, "gate_limits": _gate_limits,
               "__doc__": "Typed values of every relocalizer parameter (defaults from PARAMETERS)."},
)
RelocalizerParams.__module__ = __name__


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return '""' if value == "" else f'"{value}"'
    return repr(value)


def yaml_document(node_name: str = NODE_NAME) -> str:
    """config/relocalizer.yaml: every parameter with its default, the description as a comment."""
    lines = ["# Parameters of the glace_ros relocalizer node (generated from glace_ros/relocalizer_params.py:",
             "# python -c 'from glace_ros.relocalizer_params import yaml_document; print(yaml_document(), end=\"\")').",
             f"{node_name}:", "  ros__parameters:"]
    for spec in PARAMETERS:
        note = spec.constraint_text()
        lines.append(f"    # {spec.description}" + (f" ({note})" if note else ""))
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's parameter table: name | type | default | description."""
    rows = ["| parameter | type | default | description |", "|---|---|---|---|"]
    for spec in PARAMETERS:
        note = spec.constraint_text()
        text = spec.description + (f" ({note})" if note else "")
        rows.append(f"| `{spec.name}` | {spec.type_name} | `{_yaml_value(spec.default)}` | {text.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def _check_definition() -> None:
    """Every default must pass its own validation (checked at import)."""
    for spec in PARAMETERS:
        reason = validate_parameter(spec.name, spec.default)
        if reason:
            raise RuntimeError(f"default of {spec.name} is invalid: {reason}")


_check_definition()
