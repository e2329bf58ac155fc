"""Reader and writer of DSAC*-layout scenes: ``scene/{train,test}/{rgb,poses,calibration}[,depth]``.

- ``rgb/``: images (*.png, *.jpg, *.jpeg); frames are in the sorted order of their file names.
- ``poses/``: one 4×4 camera-to-world matrix per frame (text, 4 rows of 4 numbers).
- ``calibration/``: one focal length in pixels (principal point = image centre, at the image's own
  resolution) or a full 3×3 K.
- ``depth/`` (optional): 16-bit PNG z-depth in millimetres, 0 = invalid.
- ``features.npy`` (optional): float32 (N, 256) global features, row i for the i-th image
  (``load_global_features``, which also serves other datasets with the SceneSplit interface).

Pairing: the reference pairs the folders in sorted order; so do we, after two checks. The counts
must agree, and when the frame keys (the file name up to its first dot: ``frame-000000.color.png``
↔ ``frame-000000.pose.txt``) of a folder match the images' keys only in part, one file is missing
and another is extra: an error that names the image left without a file. (With equal key sets,
key order and sorted order coincide, since every suffix starts with a dot.)
"""
from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glace_core.geometry import check_K, focal_K, validate_pose

_logger = logging.getLogger(__name__)

RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "test")
#: Orthonormality tolerance for poses read from text (they are printed with limited precision).
POSE_TOLERANCE = 1e-2
#: Default file name of a split's global features (``--feat_name``).
FEATURES_FILE = "features.npy"


class DatasetError(ValueError):
    """A DSAC*-layout scene is missing files, has mismatched folders or unreadable contents."""


@dataclass
class Frame:
    """One frame of a split. ``pose`` is camera-to-world (4, 4) float64; ``K`` (3, 3) float64 at
    the original image resolution."""

    name: str  # rgb file name, e.g. "frame-000000.color.png"
    rgb_path: str
    pose: np.ndarray
    K: np.ndarray
    depth_path: str | None
    index: int


def frame_key(file_name: str) -> str:
    """The frame key of a file name: everything before the first dot (``a.color.png`` → ``a``)."""
    return file_name.split(".", 1)[0]


def _list(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in suffixes), key=lambda p: p.name)


def _pair(rgb: list[Path], other: list[Path], folder: Path) -> list[Path]:
    """``other`` reordered to pair with ``rgb`` (see the module docstring)."""
    if len(other) != len(rgb):
        raise DatasetError(f"{folder}: {len(other)} files but {len(rgb)} images in {folder.parent / 'rgb'} "
                           "(every image needs one file here)")
    by_key = {}
    for p in other:
        by_key.setdefault(frame_key(p.name), []).append(p)
    matched = [by_key.get(frame_key(p.name)) for p in rgb]
    if all(m is None for m in matched):
        return other  # names differ entirely: the reference's sorted-order pairing
    for p, m in zip(rgb, matched):
        if m is None:
            raise DatasetError(f"{folder}: no file for image {p.name} (expected a name starting with "
                               f"'{frame_key(p.name)}.'; the other folders' names match the images)")
        if len(m) > 1:
            raise DatasetError(f"{folder}: several files for image {p.name}: {[q.name for q in m]}")
    return [m[0] for m in matched]


def read_pose_file(path: str | os.PathLike) -> np.ndarray:
    """A camera-to-world pose (4, 4) float64 from a text file of 4 rows × 4 numbers."""
    path = Path(path)
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        T = np.array([[float(v) for v in row] for row in rows], dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"pose file {path}: cannot read 4×4 numbers ({exc})") from exc
    if T.shape != (4, 4):
        raise DatasetError(f"pose file {path}: expected 4 rows of 4 numbers, got {[len(r) for r in rows]} "
                           "numbers per row")
    try:
        return validate_pose(T, f"pose file {path}", atol=POSE_TOLERANCE)
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc


def read_calibration_file(path: str | os.PathLike) -> float | np.ndarray:
    """A focal length (float) or a K (3, 3) float64 from a calibration text file."""
    path = Path(path)
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"calibration file {path}: cannot read numbers ({exc})") from exc
    if len(values) == 1:
        f = values[0]
        if not (np.isfinite(f) and f > 0):
            raise DatasetError(f"calibration file {path}: focal length must be a positive number, got {f}")
        return f
    if len(values) != 9:
        raise DatasetError(f"calibration file {path}: expected 1 focal length or a 3×3 K (9 numbers), got "
                           f"{len(values)} numbers")
    try:
        return check_K(np.array(values, dtype=np.float64).reshape(3, 3), f"calibration file {path}: K")
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image from its header (PIL, no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as exc:
        raise DatasetError(f"image {path}: cannot read its header ({exc})") from exc
    return int(h), int(w)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3): gray is repeated, alpha dropped, 16 bit scaled /257.
    EXIF orientation is ignored, as in the reference (skimage) and in ``image_size``."""
    from PIL import Image

    from glace_core.preprocess import to_uint8_image

    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.int64)
                image = to_uint8_image(np.clip(arr, 0, 65535).astype(np.uint16))
            elif im.mode in ("RGB", "L", "RGBA"):
                image = to_uint8_image(np.array(im))  # a writable copy
            else:
                image = np.array(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"image {path}: cannot decode ({exc})") from exc
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image)


class SceneSplit:
    """One split (``train`` or ``test``) of a DSAC*-layout scene.

    Poses and calibration files are read and validated when the split is opened; images only when
    asked (``load_rgb``), image sizes only for single-focal calibrations (header read, cached).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train"):
        self.root = Path(root)
        self.split = str(split)
        self.name = self.root.resolve().name
        self.folder = self.root / self.split
        if not self.folder.is_dir():
            raise DatasetError(f"scene {self.root}: split folder {self.folder} does not exist")
        for sub in ("rgb", "poses", "calibration"):
            if not (self.folder / sub).is_dir():
                raise DatasetError(f"scene {self.root}: missing folder {self.folder / sub}")
        self._rgb = _list(self.folder / "rgb", RGB_SUFFIXES)
        if not self._rgb:
            raise DatasetError(f"{self.folder / 'rgb'}: no images (*.png, *.jpg, *.jpeg)")
        self._pose_files = _pair(self._rgb, _list(self.folder / "poses", (".txt",)), self.folder / "poses")
        self._calib_files = _pair(self._rgb, _list(self.folder / "calibration", (".txt",)),
                                  self.folder / "calibration")
        depth_dir = self.folder / "depth"
        depth = _list(depth_dir, (".png",)) if depth_dir.is_dir() else []
        self._depth_files = _pair(self._rgb, depth, depth_dir) if depth else None
        self._poses = np.stack([read_pose_file(p) for p in self._pose_files])
        self._calib = [read_calibration_file(p) for p in self._calib_files]
        self._sizes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._rgb)

    def __repr__(self) -> str:
        return f"SceneSplit({str(self.root)!r}, {self.split!r}, {len(self)} frames)"

    def _index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"frame index {i} out of range for {n} frames of {self.folder}")
        return i % n

    @property
    def names(self) -> list[str]:
        """rgb file names in frame order."""
        return [p.name for p in self._rgb]

    @property
    def poses(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-world poses."""
        return self._poses.copy()

    @property
    def camera_centres(self) -> np.ndarray:
        """(N, 3) float64 camera centres in the world frame."""
        return self._poses[:, :3, 3].copy()

    @property
    def has_depth(self) -> bool:
        return self._depth_files is not None

    @property
    def has_ground_truth(self) -> bool:
        """False when every pose is the identity (test splits without ground truth, e.g. Aachen)."""
        return not bool(np.allclose(self._poses, np.eye(4)[None]))

    def image_size(self, i: int) -> tuple[int, int]:
        """(height, width) of image ``i`` from its header (cached)."""
        i = self._index(i)
        if i not in self._sizes:
            self._sizes[i] = image_size(self._rgb[i])
        return self._sizes[i]

    def intrinsics(self, i: int) -> np.ndarray:
        """K (3, 3) float64 of frame ``i`` at its original image resolution."""
        i = self._index(i)
        calib = self._calib[i]
        if isinstance(calib, np.ndarray):
            return calib.copy()
        return focal_K(calib, *self.image_size(i))

    def __getitem__(self, i: int) -> Frame:
        i = self._index(i)
        depth = str(self._depth_files[i]) if self._depth_files is not None else None
        return Frame(self._rgb[i].name, str(self._rgb[i]), self._poses[i].copy(), self.intrinsics(i), depth, i)

    def load_rgb(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 RGB (H, W, 3)."""
        return read_rgb(self._rgb[self._index(i)])

    def load_depth_m(self, i: int) -> np.ndarray:
        """Depth of frame ``i`` as float32 (H, W) metres; 0 = invalid."""
        if self._depth_files is None:
            raise DatasetError(f"{self.folder}: this split has no depth/ folder")
        return read_depth_m(self._depth_files[self._index(i)])

    def global_features(self, feat_name: str = FEATURES_FILE) -> np.ndarray | None:
        """float32 (N, D) global features from ``<split>/<feat_name>``, None if the file is absent
        (``load_global_features`` of this split)."""
        return load_global_features(self, feat_name)


def _read_features_file(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"global features {path}: cannot load ({exc})") from exc


def load_global_features(dataset, feat_name: str = FEATURES_FILE) -> np.ndarray | None:
    """The global features of a dataset: float32 (N, D), row i for frame i; None if it has none.

    dataset: a SceneSplit (reads ``<split>/<feat_name>``), or any object with the SceneSplit
    interface whose ``global_features(feat_name)`` (or ``global_features()``, which serves only the
    default ``features.npy``) returns an array or None. Raises DatasetError (a ValueError) when the
    file cannot be loaded, the name is not served, the shape is not (len(dataset), D) or a value is
    NaN or infinite.
    """
    if isinstance(dataset, SceneSplit):
        source = dataset.folder / feat_name
        feats = _read_features_file(source)
    else:
        source = f"{feat_name} of {type(dataset).__name__}"
        method = getattr(dataset, "global_features", None)
        if method is None:
            return None
        try:
            takes_name = len(inspect.signature(method).parameters) >= 1
        except (TypeError, ValueError):
            takes_name = False
        if takes_name:
            feats = method(feat_name)
        elif feat_name == FEATURES_FILE:
            feats = method()
        else:
            raise DatasetError(f"global features {feat_name}: this {type(dataset).__name__} only provides "
                               f"{FEATURES_FILE}")
    if feats is None:
        return None
    feats = np.asarray(feats)
    if feats.ndim != 2 or feats.shape[0] != len(dataset):
        raise DatasetError(f"global features {source}: shape {feats.shape}, expected ({len(dataset)}, D) "
                           "(one row per image, in the sorted order of the images)")
    if not np.all(np.isfinite(feats)):
        raise DatasetError(f"global features {source}: contain NaN or infinite values")
    return np.ascontiguousarray(feats, dtype=np.float32)


def read_depth_m(path: str | os.PathLike) -> np.ndarray:
    """A 16-bit millimetre depth PNG as float32 (H, W) metres (0 stays 0 = invalid)."""
    import cv2

    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise DatasetError(f"depth image {path}: cannot decode")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        raise DatasetError(f"depth image {path}: expected a 16-bit single-channel PNG, got {depth.dtype} "
                           f"shape {depth.shape}")
    return depth.astype(np.float32) / 1000.0


# --------------------------------------------------------------------------- writing

def format_matrix(M: np.ndarray) -> str:
    """Rows of ``M`` as text lines with round-trip precision."""
    return "".join(" ".join(f"{float(v):.17g}" for v in row) + "\n" for row in np.atleast_2d(M))


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W) / (H, W, 3) RGB image or a uint16 (H, W) image."""
    import cv2

    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"could not encode a {image.dtype} {image.shape} image as PNG")
    return buf.tobytes()


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """float depth (H, W) in metres → uint16 millimetres; invalid (≤ 0, NaN, > 65.535 m) → 0."""
    d = np.asarray(depth_m, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        mm = np.round(d * 1000.0)
        valid = np.isfinite(mm) & (mm > 0) & (mm <= 65535)
    return np.where(valid, mm, 0).astype(np.uint16)


def _check_name(name: str) -> str:
    name = str(name)
    if not name or "/" in name or "\\" in name or name.startswith(".") or any(c.isspace() for c in name):
        raise ValueError(f"frame name must be a non-empty file stem without separators, spaces or a leading dot, "
                         f"got {name!r}")
    return name


def write_frame(root: str | os.PathLike, split: str, name: str, rgb: np.ndarray, pose: np.ndarray, K: np.ndarray,
                depth_m: np.ndarray | None = None) -> Path:
    """Write one frame into ``root/split``: ``rgb/<name>.png``, ``poses/<name>.txt`` (4×4
    camera-to-world), ``calibration/<name>.txt`` (full 3×3 K) and, with ``depth_m`` (H, W) metres,
    ``depth/<name>.png`` (uint16 mm). Each file is written atomically. Returns the split folder.

    rgb: uint8 (H, W, 3) RGB or (H, W) gray; pose (4, 4); K (3, 3) at the image's resolution.
    """
    from glace_core.io_utils import atomic_write_bytes, atomic_write_text
    from glace_core.preprocess import to_uint8_image

    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be uint8, got {rgb.dtype}")
    rgb = to_uint8_image(rgb)
    pose = validate_pose(pose, f"pose of frame {name}")
    K = check_K(K, f"K of frame {name}")
    depth_png = None
    if depth_m is not None:
        depth_m = np.asarray(depth_m)
        if depth_m.shape != rgb.shape[:2]:
            raise ValueError(f"depth of frame {name} has shape {depth_m.shape}, the image {rgb.shape[:2]}")
        depth_png = encode_png(depth_to_mm(depth_m))
    folder = Path(root) / split
    atomic_write_bytes(folder / "rgb" / f"{name}.png", encode_png(rgb))
    atomic_write_text(folder / "poses" / f"{name}.txt", format_matrix(pose))
    atomic_write_text(folder / "calibration" / f"{name}.txt", format_matrix(K))
    if depth_png is not None:
        atomic_write_bytes(folder / "depth" / f"{name}.png", depth_png)
    return folder
