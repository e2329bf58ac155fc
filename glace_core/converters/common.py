"""Helpers shared by the dataset converters: output writing, pose conversions, NVM and pose-list
parsing, image resizing, depth registration and archive download.

Every converter writes a DSAC*-layout scene (see glace_core/dataset.py): per split ``rgb/``,
``poses/`` (4×4 camera-to-world), ``calibration/`` (one focal or a 3×3 K) and optionally
``depth/`` (uint16 mm), with all files of one frame sharing the stem (``<stem>.<kind>.<ext>``).
"""
from __future__ import annotations

import logging
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glace_core.dataset import depth_to_mm, encode_png, format_matrix
from glace_core.geometry import quaternion_to_rotation_matrix, validate_pose
from glace_core.io_utils import atomic_write_bytes, atomic_write_text

_logger = logging.getLogger(__name__)


class ConversionError(ValueError):
    """A raw dataset is missing files or has contents the converter cannot read."""


def select_scenes(found: dict[str, Path], wanted: str | None, dataset: str, raw_dir: Path,
                  marker: str, label: str | None = None) -> dict[str, Path]:
    """The scenes to convert: all of ``found`` (name -> folder), or only ``wanted``. Raises
    ConversionError naming ``dataset`` when ``wanted`` is missing or nothing was found (``marker``
    says what makes a folder a scene; ``label`` is how the user wrote ``wanted``)."""
    if wanted is not None:
        if wanted not in found:
            raise ConversionError(f"{dataset} scene {(label or wanted)!r} not found in {raw_dir} "
                                  f"(found: {sorted(found)})")
        found = {wanted: found[wanted]}
    if not found:
        raise ConversionError(f"no {dataset} scene (a folder with {marker}) in {raw_dir}")
    return found


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ConversionError(f"{what} not found: {path}")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ConversionError(f"{what} not found: {path}")
    return path


# --------------------------------------------------------------------------- poses

def pose_from_world_to_cam(q_wxyz, t) -> np.ndarray:
    """Camera-to-world (4, 4) of a world-to-camera pose given as quaternion (qw, qx, qy, qz) and
    translation t (p_cam = R p_world + t, the COLMAP convention)."""
    R = quaternion_to_rotation_matrix(np.asarray(q_wxyz, dtype=np.float64))
    T = np.eye(4)
    T[:3, :3] = R.T
    T[:3, 3] = -R.T @ np.asarray(t, dtype=np.float64)
    return T


def pose_from_centre(q_wxyz, centre) -> np.ndarray:
    """Camera-to-world (4, 4) from a world-to-camera rotation quaternion (qw, qx, qy, qz) and the
    camera centre in world coordinates (the Cambridge and NVM convention)."""
    R = quaternion_to_rotation_matrix(np.asarray(q_wxyz, dtype=np.float64))
    T = np.eye(4)
    T[:3, :3] = R.T
    T[:3, 3] = np.asarray(centre, dtype=np.float64)
    return T


def checked_pose(T: np.ndarray, what: str) -> np.ndarray | None:
    """``T`` validated as a rigid pose, or None (with a warning) when it is not finite (12-Scenes
    marks tracking failures with -inf poses)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape == (4, 4) and not np.all(np.isfinite(T)):
        _logger.warning("%s: pose is not finite; frame skipped", what)
        return None
    try:
        return validate_pose(T, what, atol=1e-2)
    except ValueError as exc:
        raise ConversionError(str(exc)) from exc


def read_pose_matrix(path: Path) -> np.ndarray:
    """A 4×4 matrix from a text file (non-finite values allowed: see ``checked_pose``)."""
    try:
        M = np.array([[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()])
    except ValueError as exc:
        raise ConversionError(f"pose file {path}: cannot read numbers ({exc})") from exc
    if M.shape != (4, 4):
        raise ConversionError(f"pose file {path}: expected 4 rows of 4 numbers, got shape {M.shape}")
    return M


@dataclass
class ListedPose:
    """One line of a pose list: camera-to-world pose and the optional focal length."""

    pose: np.ndarray
    focal: float | None


def read_pose_list(path: Path) -> dict[str, ListedPose]:
    """A pose list ``name qw qx qy qz tx ty tz [f]`` (world-to-camera, COLMAP convention: the
    visloc_pseudo_gt_limitations pGT files) as {name: ListedPose with camera-to-world pose}."""
    out: dict[str, ListedPose] = {}
    for number, line in enumerate(require_file(path, "pose list").read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) not in (8, 9):
            raise ConversionError(f"{path}:{number}: expected 'name qw qx qy qz tx ty tz [f]', got {len(parts)} fields")
        try:
            values = [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise ConversionError(f"{path}:{number}: {exc}") from exc
        out[parts[0]] = ListedPose(pose_from_world_to_cam(values[:4], values[4:7]),
                                   values[7] if len(values) == 8 else None)
    if not out:
        raise ConversionError(f"pose list {path} has no poses")
    return out


@dataclass
class NvmCamera:
    """One camera of an NVM reconstruction: focal (px, raw image resolution) and camera-to-world pose."""

    name: str
    focal: float
    pose: np.ndarray


def read_nvm_cameras(path: Path) -> dict[str, NvmCamera]:
    """Cameras of a VisualSFM NVM_V3 file, keyed by image name (``name f qw qx qy qz cx cy cz r 0``:
    world-to-camera rotation quaternion and camera centre; radial distortion ignored)."""
    lines = require_file(path, "NVM reconstruction").read_text(errors="replace").splitlines()
    if not lines or not lines[0].startswith("NVM_V3"):
        raise ConversionError(f"{path}: not an NVM_V3 file (first line {lines[0][:40] if lines else ''!r})")
    rows = iter(line for line in lines[1:] if line.strip())
    try:
        count = int(next(rows).split()[0])
    except (StopIteration, ValueError) as exc:
        raise ConversionError(f"{path}: missing the camera count after the header") from exc
    cameras: dict[str, NvmCamera] = {}
    for k in range(count):
        try:
            parts = next(rows).split()
            values = [float(v) for v in parts[1:9]]
        except (StopIteration, ValueError) as exc:
            raise ConversionError(f"{path}: camera {k + 1} of {count} is missing or unreadable") from exc
        if len(values) != 8 or not values[0] > 0:
            raise ConversionError(f"{path}: camera {k + 1} ({parts[0]}) needs 'name f qw qx qy qz cx cy cz ...'")
        cameras[parts[0]] = NvmCamera(parts[0], values[0], pose_from_centre(values[1:5], values[5:8]))
    return cameras


# --------------------------------------------------------------------------- writing

class SplitWriter:
    """Writes the frames of one output split; each file atomically."""

    def __init__(self, scene_dir: Path, split: str, link: bool = False):
        self.folder = Path(scene_dir) / split
        self.link = link
        self.count = 0
        self.names: list[tuple[str, str]] = []  # (output rgb name, original name)
        for sub in ("rgb", "poses", "calibration"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def write(self, stem: str, pose: np.ndarray, calibration: float | np.ndarray, *, image_src: Path | None = None,
              image: np.ndarray | None = None, depth_m: np.ndarray | None = None, original: str | None = None,
              rgb_suffix: str = ".color") -> None:
        """One frame: the image copied from ``image_src`` (or linked) or encoded from ``image``
        (uint8 RGB) as PNG, the pose, the calibration (focal or K) and optional depth (metres)."""
        if (image_src is None) == (image is None):
            raise ValueError("give exactly one of image_src and image")
        if not stem or "." in stem or "/" in stem:
            raise ValueError(f"frame stem must be non-empty without dots or slashes, got {stem!r}")
        if image_src is not None:
            dst = self.folder / "rgb" / f"{stem}{rgb_suffix}{image_src.suffix.lower()}"
            if self.link:
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                os.symlink(os.path.abspath(image_src), dst)
            else:
                atomic_write_bytes(dst, image_src.read_bytes())
        else:
            dst = self.folder / "rgb" / f"{stem}{rgb_suffix}.png"
            atomic_write_bytes(dst, encode_png(image))
        atomic_write_text(self.folder / "poses" / f"{stem}.pose.txt", format_matrix(pose))
        calib = np.atleast_2d(np.asarray(calibration, dtype=np.float64))
        atomic_write_text(self.folder / "calibration" / f"{stem}.calibration.txt", format_matrix(calib))
        if depth_m is not None:
            atomic_write_bytes(self.folder / "depth" / f"{stem}.depth.png", encode_png(depth_to_mm(depth_m)))
        self.names.append((dst.name, original or dst.name))
        self.count += 1

    def finish(self, write_names: bool = False) -> int:
        """Optionally write ``image_names.txt`` (output name → original name); returns the count."""
        if self.count == 0:
            raise ConversionError(f"{self.folder}: no frames were converted")
        if write_names:
            atomic_write_text(self.folder / "image_names.txt", "".join(f"{a} {b}\n" for a, b in self.names))
        return self.count


def resize_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 image resized (PIL bilinear) so that its shorter side is ``resolution``."""
    from glace_core.preprocess import resize_rgb, resized_shape

    h, w = image.shape[:2]
    return resize_rgb(image, *resized_shape(h, w, resolution))


def register_depth(depth_mm: np.ndarray, K_depth: np.ndarray, K_rgb: np.ndarray, rgb_hw: tuple[int, int],
                   invalid: int | None = 65535) -> np.ndarray:
    """Depth (uint16 mm, (h, w) of the depth camera) resampled into the RGB camera, (H, W) uint16.

    Assumes an identity depth-to-RGB extrinsic: z is unchanged and every RGB pixel centre maps to
    the depth pixel K_depth·K_rgb⁻¹·[u, v, 1] (nearest neighbour, no smoothing across edges).
    ``invalid`` raw values and pixels outside the depth image become 0.
    """
    depth_mm = np.asarray(depth_mm)
    H, W = rgb_hw
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], -1) @ (np.asarray(K_depth) @ np.linalg.inv(np.asarray(K_rgb))).T
    x, y = np.floor(pix[..., 0] / pix[..., 2]).astype(int), np.floor(pix[..., 1] / pix[..., 2]).astype(int)
    inside = (x >= 0) & (x < depth_mm.shape[1]) & (y >= 0) & (y < depth_mm.shape[0])
    out = np.zeros((H, W), dtype=np.uint16)
    out[inside] = depth_mm[y[inside], x[inside]]
    if invalid is not None:
        out[out == invalid] = 0
    return out


# --------------------------------------------------------------------------- download

def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` (through a temporary file); a clear ConversionError offline."""
    if dest.is_file():
        _logger.info("%s already present", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name("." + dest.name + ".part")
    _logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise ConversionError(f"could not download {url} ({exc}); without internet access download it by hand "
                              f"into {dest.parent} and run again without --download") from exc
    os.replace(tmp, dest)
    return dest


def extract_zip(archive: Path, into: Path, nested: bool = False) -> None:
    """Extract ``archive`` into ``into``; with ``nested`` also every .zip it contained (7-Scenes
    ships one zip per sequence inside the scene zip)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
            members = [m for m in zf.namelist() if m.lower().endswith(".zip")]
    except zipfile.BadZipFile as exc:
        raise ConversionError(f"{archive} is not a valid zip archive ({exc}); delete it and download again") from exc
    if nested:
        for member in members:
            inner = into / member
            extract_zip(inner, inner.parent)
            inner.unlink()
