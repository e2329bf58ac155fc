"""The results of a replay: per-frame answers against ground truth, metrics, files and the table.

Accuracy follows glace-eval (``glace_core.geometry.pose_errors`` and ``accuracy_table``); a frame
without an answer counts as a failure with infinite error. Latency is from publishing an image to
receiving its pose.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FrameResult", "frame_errors", "latency_stats", "summarize", "write_outputs", "format_table"]


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


def format_table(summary: dict) -> str:
    """The metrics of a replay as a plain-text table."""
    acc = summary.get("accuracy", {})
    lat = summary["latency"]
    rows = [("frames replayed", f"{summary['frames']}"),
            ("frames answered", f"{summary['answered']} ({100 * summary['answered_fraction']:.1f}%)"),
            ("frames with ground truth", f"{summary['frames_with_gt']}")]
    node = summary.get("node") or {}
    if "frames_received" in node:
        rows.append(("received by the node", node["frames_received"]))
    causes = ", ".join(f"{k[len('rejected_'):]} {v}" for k, v in sorted(node.items()) if k.startswith("rejected_"))
    if causes:
        rows.append(("not answered because", causes))
    rows += [(k, f"{v:.2f}" if isinstance(v, float) else str(v)) for k, v in acc.items()]
    fmt = lambda v: "n/a" if v is None else f"{v:.1f} ms"  # noqa: E731
    rows += [("latency p50", fmt(lat["p50_ms"])), ("latency p90", fmt(lat["p90_ms"])), ("latency max", fmt(lat["max_ms"]))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
