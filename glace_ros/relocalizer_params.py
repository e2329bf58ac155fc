"""The relocalizer node's parameters: the single definition of names, defaults, ranges and descriptions.

The node declares exactly these parameters (``glace_ros.relocalizer_node``), ``config/relocalizer.yaml``
ships exactly these keys with these defaults, and the README table lists them; tests check all three
against :data:`PARAMETERS`. No ROS import here, so the table can be read anywhere.

Parameters marked ``read_only`` configure the start-up (the map, the encoder, the subscriptions) and
cannot change while the node runs; every other one takes effect on the next frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

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


_GLOBAL_MODES = ("every_frame", "every_n", "off")

#: Every parameter of the node, in the order of config/relocalizer.yaml.
PARAMETERS: tuple[ParamSpec, ...] = (
    # the map and the networks
    ParamSpec("map_path", "", "map file (.pt: a GLACE head or an ensemble map) of the scene, with its "
              "<map>.json sidecar; required",
              read_only=True),
    ParamSpec("encoder_path", "", "encoder weights file or named encoder ('xfeat', 'ace-random:<seed>'); "
              "empty: the encoder the map's sidecar names, else the shipped default", read_only=True),
    ParamSpec("device", "auto", "where the networks run: 'auto' (CUDA when available), 'cpu' or 'cuda'",
              choices=("auto", "cpu", "cuda"), read_only=True),
    # inputs
    ParamSpec("image_topic", "/camera/image_raw", "sensor_msgs/Image topic; with use_compressed the "
              "CompressedImage topic (\"/compressed\" is appended unless the name already ends with it)",
              read_only=True),
    ParamSpec("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic of the images",
              read_only=True),
    ParamSpec("use_compressed", False, "subscribe to sensor_msgs/CompressedImage instead of Image", read_only=True),
    ParamSpec("image_resolution", 0, "network input height in pixels (the shorter image side is resized "
              "to it, intrinsics scaled alike); 0: the map's training resolution from its sidecar, else 480",
              minimum=0, maximum=4096),
    ParamSpec("camera_info_tolerance", 0.05, "seconds: a CameraInfo this close to the image stamp is used, "
              "otherwise the latest one of the image's frame", minimum=0.0, maximum=3600.0, read_only=True),
    # global descriptor
    ParamSpec("global_checkpoint", "", "R2Former checkpoint (CVPR23_DeitS_Rerank.pth); empty: heads with global "
              "input get zero global features (with a warning)", read_only=True),
    ParamSpec("global_mode", "every_n", "when to compute the global descriptor: 'every_frame', 'every_n' "
              "(reuse it for global_every_n frames; default: R2Former at 480x640 costs ~2x the encoder + head "
              "on 2 CPU cores, BENCHMARKS.md 'Inference (CPU)') or 'off' (zeros)", choices=_GLOBAL_MODES),
    ParamSpec("global_every_n", 5, "frames a global descriptor is reused for in 'every_n' mode", minimum=1,
              maximum=100000),
    ParamSpec("global_resolution", (480, 640), "(height, width) the global descriptor's input is resized to; "
              "multiples of 16", read_only=True),
    # RANSAC
    ParamSpec("hypotheses", 64, "RANSAC pose hypotheses per frame", minimum=1, maximum=1000000),
    ParamSpec("threshold", 10.0, "RANSAC inlier threshold, pixels", minimum=1e-3, maximum=1e6),
    ParamSpec("inlier_alpha", 100.0, "scale of the soft inlier count score", minimum=1e-6, maximum=1e9),
    ParamSpec("max_reprojection_error", 100.0, "pixels: reprojection errors are clamped to it when scoring",
              minimum=1e-3, maximum=1e9),
    ParamSpec("seed", 0, "RANSAC random seed (the same frame and seed give the same pose)", minimum=0,
              maximum=2 ** 31 - 1),
    ParamSpec("min_inlier_count", 100, "poses with fewer RANSAC inliers are not published", minimum=0,
              maximum=10 ** 9),
    ParamSpec("ensemble_candidates", 2, "ensemble maps (glace-train --num_clusters, the cpu preset): heads run "
              "per frame, best-routed first, each with RANSAC; the pose with the most inliers wins (0: every "
              "head; BENCHMARKS.md 'Encoders')", minimum=0, maximum=1024),
    ParamSpec("pipelined_ransac", False, "run a frame's RANSAC on its own thread while the next frame's "
              "network pass runs (same poses; at most one frame waits for RANSAC); off by default: on "
              "2 CPU cores RANSAC takes < 1 ms and the overlap measured no gain (BENCHMARKS.md)"),
    # outputs
    ParamSpec("map_frame", "map", "frame_id of the published poses (the map's frame)"),
    ParamSpec("publish_tf", True, "publish the pose on /tf"),
    ParamSpec("tf_mode", "camera", "'camera': map -> camera frame; 'odom': REP-105 map -> odom_frame, from "
              "the odom -> camera transform heard on /tf and /tf_static", choices=("camera", "odom")),
    ParamSpec("odom_frame", "odom", "odometry frame for tf_mode 'odom'"),
    ParamSpec("camera_frame", "", "the camera's optical frame; empty: the image's header.frame_id"),
    ParamSpec("transform_tolerance", 0.1, "seconds the map -> odom transform is future-dated by "
              "(tf_mode 'odom')", minimum=0.0, maximum=60.0),
    ParamSpec("publish_initialpose", False, "also publish PoseWithCovarianceStamped on /initialpose "
              "(Nav2 AMCL) with the pose of base_frame"),
    ParamSpec("base_frame", "base_link", "robot frame whose pose goes to /initialpose (looked up in TF "
              "relative to the camera); empty: the camera's pose"),
    ParamSpec("publish_point_cloud", False, "publish the predicted scene coordinates as PointCloud2 on "
              "~/scene_coordinates"),
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
    if name in ("map_frame", "odom_frame") and not value.strip():
        return f"{name} must not be empty"
    return None


@dataclass
class RelocalizerParams:
    """Typed values of every parameter (defaults from :data:`PARAMETERS`)."""

    map_path: str = PARAMETERS_BY_NAME["map_path"].default
    encoder_path: str = PARAMETERS_BY_NAME["encoder_path"].default
    device: str = PARAMETERS_BY_NAME["device"].default
    image_topic: str = PARAMETERS_BY_NAME["image_topic"].default
    camera_info_topic: str = PARAMETERS_BY_NAME["camera_info_topic"].default
    use_compressed: bool = PARAMETERS_BY_NAME["use_compressed"].default
    image_resolution: int = PARAMETERS_BY_NAME["image_resolution"].default
    camera_info_tolerance: float = PARAMETERS_BY_NAME["camera_info_tolerance"].default
    global_checkpoint: str = PARAMETERS_BY_NAME["global_checkpoint"].default
    global_mode: str = PARAMETERS_BY_NAME["global_mode"].default
    global_every_n: int = PARAMETERS_BY_NAME["global_every_n"].default
    global_resolution: tuple[int, int] = PARAMETERS_BY_NAME["global_resolution"].default
    hypotheses: int = PARAMETERS_BY_NAME["hypotheses"].default
    threshold: float = PARAMETERS_BY_NAME["threshold"].default
    inlier_alpha: float = PARAMETERS_BY_NAME["inlier_alpha"].default
    max_reprojection_error: float = PARAMETERS_BY_NAME["max_reprojection_error"].default
    seed: int = PARAMETERS_BY_NAME["seed"].default
    min_inlier_count: int = PARAMETERS_BY_NAME["min_inlier_count"].default
    ensemble_candidates: int = PARAMETERS_BY_NAME["ensemble_candidates"].default
    pipelined_ransac: bool = PARAMETERS_BY_NAME["pipelined_ransac"].default
    map_frame: str = PARAMETERS_BY_NAME["map_frame"].default
    publish_tf: bool = PARAMETERS_BY_NAME["publish_tf"].default
    tf_mode: str = PARAMETERS_BY_NAME["tf_mode"].default
    odom_frame: str = PARAMETERS_BY_NAME["odom_frame"].default
    camera_frame: str = PARAMETERS_BY_NAME["camera_frame"].default
    transform_tolerance: float = PARAMETERS_BY_NAME["transform_tolerance"].default
    publish_initialpose: bool = PARAMETERS_BY_NAME["publish_initialpose"].default
    base_frame: str = PARAMETERS_BY_NAME["base_frame"].default
    publish_point_cloud: bool = PARAMETERS_BY_NAME["publish_point_cloud"].default

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RelocalizerParams":
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

    def replace(self, **changes: Any) -> "RelocalizerParams":
        """A copy with ``changes`` applied and validated."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return RelocalizerParams.from_mapping(current)


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
    lines = [f"# Parameters of the glace_ros relocalizer node (generated from glace_ros/relocalizer_params.py:",
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
    """The dataclass and the table must list the same names with the same defaults (checked at import)."""
    names = [f.name for f in fields(RelocalizerParams)]
    if names != [p.name for p in PARAMETERS]:
        raise RuntimeError(f"RelocalizerParams fields {names} differ from PARAMETERS")
    for spec in PARAMETERS:
        reason = validate_parameter(spec.name, spec.default)
        if reason:
            raise RuntimeError(f"default of {spec.name} is invalid: {reason}")


_check_definition()
