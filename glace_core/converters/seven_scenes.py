"""Microsoft 7-Scenes → DSAC* layout.

Raw layout (one folder per scene, as unpacked from the release): ``<scene>/TrainSplit.txt`` and
``TestSplit.txt`` (lines ``sequence1``, ``sequence2``, ...), ``<scene>/seq-01/frame-000000.color.png``,
``.depth.png`` (uint16 mm, 65535 = invalid) and ``.pose.txt`` (4×4 camera-to-world).

Output ``<out>/7scenes_<scene>/{train,test}``: frames named ``seq-01-frame-000000``; calibration
is the single focal length 525 (principal point at the image centre, 320, 240).

Depth: the raw depth maps come from the Kinect's depth camera and are **not registered** to the
RGB images. ``depth="registered"`` (default) resamples them into the RGB camera using the Kinect
depth intrinsics (f = 585, principal point 320, 240) and the RGB intrinsics (f = 525) with an
identity depth-to-RGB extrinsic: an approximation (the true extrinsic is a few centimetres and a
small rotation, which the reference's "calibrated" release corrects). ``depth="raw"`` copies the
maps unregistered (only 65535 → 0), ``depth="none"`` writes no depth. RGB-only training needs none.

``pgt``: poses from a pseudo-ground-truth list (see ``common.read_pose_list``: lines
``seq-01/frame-000000.color.png qw qx qy qz tx ty tz [f]``, world-to-camera), a folder holding
``<scene>_train.txt`` / ``<scene>_test.txt`` (the visloc_pseudo_gt_limitations release,
``pgt/sfm/7scenes``) or one file for both splits. Frames without a pGT pose are skipped; a listed
focal length replaces 525.

Download (``--download``), one archive per scene (it holds one zip per sequence):
https://download.microsoft.com/download/2/8/5/28564B23-0828-408F-8631-23B1EFF1DAC8/<scene>.zip
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from glace_core.converters.common import (ConversionError, SplitWriter, checked_pose, download, extract_zip,
                                          read_pose_matrix, register_depth, require_dir, require_file, select_scenes)
from glace_core.converters.pgt import lookup_pgt

_logger = logging.getLogger(__name__)

SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")
URL = "https://download.microsoft.com/download/2/8/5/28564B23-0828-408F-8631-23B1EFF1DAC8/{scene}.zip"
FOCAL = 525.0
IMAGE_HW = (480, 640)
K_RGB = np.array([[525.0, 0, 320.0], [0, 525.0, 240.0], [0, 0, 1]])
K_DEPTH = np.array([[585.0, 0, 320.0], [0, 585.0, 240.0], [0, 0, 1]])
DEPTH_MODES = ("registered", "raw", "none")
OUTPUT_PREFIX = "7scenes_"


def find_scenes(raw_dir: Path) -> dict[str, Path]:
    """{scene name: folder} of the 7-Scenes scenes in ``raw_dir`` (or ``raw_dir`` itself)."""
    if (raw_dir / "TrainSplit.txt").is_file():
        return {raw_dir.name: raw_dir}
    if not raw_dir.is_dir():
        return {}
    return {p.name: p for p in sorted(raw_dir.iterdir()) if (p / "TrainSplit.txt").is_file()}


def read_split(path: Path) -> list[str]:
    """Sequence folder names (``seq-01``) of a TrainSplit.txt / TestSplit.txt."""
    seqs = []
    for line in require_file(path, "7-Scenes split file").read_text().splitlines():
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*sequence\s*(\d+)\s*", line)
        if match is None:
            raise ConversionError(f"{path}: expected lines 'sequenceN', got {line.strip()!r}")
        seqs.append(f"seq-{int(match.group(1)):02d}")
    if not seqs:
        raise ConversionError(f"{path} lists no sequences")
    return seqs


def download_scenes(raw_dir: Path, scenes: list[str]) -> None:
    for scene in scenes:
        if (raw_dir / scene / "TrainSplit.txt").is_file():
            continue
        archive = download(URL.format(scene=scene), raw_dir / f"{scene}.zip")
        extract_zip(archive, raw_dir, nested=True)


def convert_scene(scene_dir: Path, out_dir: Path, *, depth: str = "registered", pgt: Path | None = None,
                  link: bool = False) -> dict[str, int]:
    """Convert one raw scene folder into ``out_dir`` (the scene's output folder); returns frame counts."""
    if depth not in DEPTH_MODES:
        raise ValueError(f"depth must be one of {DEPTH_MODES}, got {depth!r}")
    counts = {}
    for split, split_file in (("train", "TrainSplit.txt"), ("test", "TestSplit.txt")):
        listed = lookup_pgt(pgt, scene_dir.name, split) if pgt is not None else None
        writer = SplitWriter(out_dir, split, link=link)
        skipped = 0
        for seq in read_split(scene_dir / split_file):
            seq_dir = require_dir(scene_dir / seq, f"sequence folder of {split_file}")
            for image in sorted(seq_dir.glob("frame-*.color.png")):
                frame = image.name.split(".", 1)[0]
                focal = FOCAL
                if listed is not None:
                    entry = listed.get(f"{seq}/{image.name}")
                    if entry is None:
                        skipped += 1
                        continue
                    pose, focal = entry.pose, entry.focal or FOCAL
                else:
                    pose = read_pose_matrix(require_file(seq_dir / f"{frame}.pose.txt", "pose file"))
                pose = checked_pose(pose, f"{seq_dir / frame}")
                if pose is None:
                    skipped += 1
                    continue
                depth_m = None
                if depth != "none":
                    depth_m = _depth(seq_dir / f"{frame}.depth.png", depth)
                writer.write(f"{seq}-{frame}", pose, focal, image_src=image, depth_m=depth_m)
        counts[split] = writer.finish()
        if skipped:
            _logger.warning("%s %s: %d frames skipped (no valid pose)", scene_dir.name, split, skipped)
    return counts


def _depth(path: Path, mode: str) -> np.ndarray:
    import cv2

    raw = cv2.imread(str(require_file(path, "depth image")), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise ConversionError(f"depth image {path}: expected a 16-bit single-channel PNG")
    if mode == "registered":
        mm = register_depth(raw, K_DEPTH, K_RGB, IMAGE_HW)
    else:
        mm = np.where(raw == 65535, 0, raw).astype(np.uint16)
    return mm.astype(np.float64) / 1000.0


def convert(raw_dir: Path, out_dir: Path, *, scene: str | None = None, pgt: Path | None = None,
            download_missing: bool = False, depth: str = "registered", link: bool = False) -> dict[str, dict]:
    """Convert every scene (or ``scene``) of ``raw_dir`` into ``out_dir/7scenes_<scene>``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if download_missing:
        download_scenes(raw_dir, [scene] if scene else list(SCENES))
    scenes = select_scenes(find_scenes(raw_dir), scene, "7-Scenes", raw_dir, "TrainSplit.txt")
    return {name: convert_scene(path, out_dir / f"{OUTPUT_PREFIX}{name}", depth=depth, pgt=pgt, link=link)
            for name, path in scenes.items()}
