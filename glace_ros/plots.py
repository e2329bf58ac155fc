"""PNG plots of a relocalization run (matplotlib, Agg backend: no display needed).

- :func:`plot_trajectory`: top-down view of the estimated camera centres against ground truth.
- :func:`plot_error_cdf`: cumulative distribution of translation and rotation errors.
- :func:`plot_error_over_time`: translation and rotation error per frame over the bag's time.

Each function writes one PNG atomically and returns its path. Frames without an estimate are
passed as NaN and drawn as gaps (trajectory, error over time) or counted as never reaching any
error (CDF).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from glace_core.io_utils import atomic_write_bytes


def _figure(figsize=(6.4, 4.8)):
    from matplotlib.figure import Figure  # object API: no pyplot global state, Agg when saved

    return Figure(figsize=figsize, dpi=100)


def _save(fig, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _check_centres(name: str, centres: np.ndarray) -> np.ndarray:
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3) camera centres, got shape {centres.shape}")
    return centres


def top_down_axes(centres: np.ndarray) -> tuple[int, int]:
    """The two world axes (of x, y, z) spanning the largest extent of the (N, 3) ``centres``:
    the view drops the axis along which the trajectory varies least (the vertical for a
    ground robot)."""
    finite = centres[np.all(np.isfinite(centres), axis=1)]
    if len(finite) < 2:
        return 0, 1
    drop = int(np.argmin(finite.std(axis=0)))
    a, b = [i for i in range(3) if i != drop]
    return a, b


def plot_trajectory(est_centres: np.ndarray, gt_centres: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Top-down trajectory: ground-truth (N, 3) centres as a line, estimated (N, 3) centres as
    points (NaN rows: no estimate), each estimate joined to its ground truth by a thin line."""
    est, gt = _check_centres("est_centres", est_centres), _check_centres("gt_centres", gt_centres)
    if est.shape != gt.shape:
        raise ValueError(f"est_centres {est.shape} and gt_centres {gt.shape} must have the same shape")
    a, b = top_down_axes(gt)
    names = "xyz"
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(gt[:, a], gt[:, b], "-", color="tab:green", lw=1.5, label="ground truth")
    ok = np.all(np.isfinite(est), axis=1) & np.all(np.isfinite(gt), axis=1)
    if ok.any():
        seg_x = np.stack([gt[ok, a], est[ok, a], np.full(ok.sum(), np.nan)], axis=1).reshape(-1)
        seg_y = np.stack([gt[ok, b], est[ok, b], np.full(ok.sum(), np.nan)], axis=1).reshape(-1)
        ax.plot(seg_x, seg_y, "-", color="0.6", lw=0.5)
        ax.plot(est[ok, a], est[ok, b], ".", color="tab:red", ms=4, label="estimated")
    ax.set_xlabel(f"{names[a]} [m]")
    ax.set_ylabel(f"{names[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, lw=0.3)
    ax.legend(loc="best")
    ax.set_title(title or f"trajectory, top-down ({int(ok.sum())} of {len(gt)} frames estimated)")
    fig.tight_layout()
    return _save(fig, path)


def plot_error_cdf(t_errs_m: np.ndarray, r_errs_deg: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Cumulative fraction of frames (N,) under each translation (cm) and rotation (deg) error;
    inf/NaN errors (no estimate) keep the curve below 1."""
    t = np.asarray(t_errs_m, dtype=np.float64).reshape(-1) * 100.0
    r = np.asarray(r_errs_deg, dtype=np.float64).reshape(-1)
    if t.size != r.size:
        raise ValueError(f"t_errs_m ({t.size}) and r_errs_deg ({r.size}) must have the same length")
    fig = _figure((9.6, 4.0))
    for k, (errs, unit, color) in enumerate(((t, "translation error [cm]", "tab:blue"),
                                              (r, "rotation error [deg]", "tab:orange"))):
        ax = fig.add_subplot(1, 2, k + 1)
        finite = np.sort(errs[np.isfinite(errs)])
        n = max(errs.size, 1)
        if finite.size:
            ax.step(np.concatenate([[0.0], finite]), np.arange(finite.size + 1) / n, where="post", color=color)
            ax.set_xscale("symlog", linthresh=1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(unit)
        ax.set_ylabel("fraction of frames")
        ax.grid(True, lw=0.3)
    fig.suptitle(title or f"error CDF ({t.size} frames)")
    fig.tight_layout()
    return _save(fig, path)


def plot_error_over_time(times_s: np.ndarray, t_errs_m: np.ndarray, r_errs_deg: np.ndarray, path: str | Path,
                         title: str = "") -> Path:
    """Translation (cm) and rotation (deg) error of each frame (N,) against its time (N,) in
    seconds since the first frame; frames without an estimate are marked on the time axis."""
    times = np.asarray(times_s, dtype=np.float64).reshape(-1)
    t = np.asarray(t_errs_m, dtype=np.float64).reshape(-1) * 100.0
    r = np.asarray(r_errs_deg, dtype=np.float64).reshape(-1)
    if not (times.size == t.size == r.size):
        raise ValueError(f"times_s ({times.size}), t_errs_m ({t.size}) and r_errs_deg ({r.size}) must have "
                         f"the same length")
    fig = _figure((9.6, 4.8))
    for k, (errs, unit, color) in enumerate(((t, "translation error [cm]", "tab:blue"),
                                              (r, "rotation error [deg]", "tab:orange"))):
        ax = fig.add_subplot(2, 1, k + 1)
        ok = np.isfinite(errs)
        ax.plot(times[ok], errs[ok], ".-", color=color, ms=3, lw=0.8)
        if (~ok).any():
            ax.plot(times[~ok], np.zeros((~ok).sum()), "x", color="k", ms=4, label="no estimate")
            ax.legend(loc="upper right")
        ax.set_ylabel(unit)
        ax.grid(True, lw=0.3)
        if k == 1:
            ax.set_xlabel("time since first frame [s]")
    fig.suptitle(title or "error over time")
    fig.tight_layout()
    return _save(fig, path)
