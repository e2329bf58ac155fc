"""Stanford 12-Scenes → DSAC* layout.

Raw layout (as unpacked from apt1.zip, apt2.zip, office1.zip, office2.zip): ``<apt1>/<kitchen>/``
with ``data/frame-000000.color.jpg`` and ``.pose.txt`` (4×4 camera-to-world; tracking failures
are written as non-finite poses and skipped), ``info.txt`` (``m_calibrationColorIntrinsic = `` 16
numbers of a 4×4, ``m_colorWidth``, ``m_colorHeight``) and ``split.txt`` (lines
``sequence0 [frames=357]  [start=0 ; end=356]``). The **first** range (sequence0) is the test
split, every other frame is a training frame.

Output ``<out>/12scenes_<apt1>_<kitchen>/{train,test}``: frames named ``frame-000000``, the JPEGs
copied, calibration the full 3×3 colour K of info.txt (scaled if the images do not have the size
info.txt states). No depth: 12-Scenes depth maps are in the depth camera's frame (not registered
to the colour images) and RGB training does not need them.

``pgt``: see glace_core/converters/pgt.py (``pgt/sfm/12scenes/<apt1>_<kitchen>_<split>.txt``).
Frames without a pGT pose are skipped; the listed focal length replaces fx and fy (the principal
point stays info.txt's).

Download (``--download``): http://graphics.stanford.edu/projects/reloc/data/{apt1,apt2,office1,office2}.zip
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from glace_core.converters.common import (ConversionError, SplitWriter, checked_pose, download, extract_zip,
                                          read_pose_matrix, require_dir, require_file, select_scenes)
from glace_core.converters.pgt import lookup_pgt

_logger = logging.getLogger(__name__)

SCENES = ("apt1/kitchen", "apt1/living", "apt2/bed", "apt2/kitchen", "apt2/living", "apt2/luke",
          "office1/gates362", "office1/gates381", "office1/lounge", "office1/manolis", "office2/5a", "office2/5b")
URL = "http://graphics.stanford.edu/projects/reloc/data/{archive}.zip"
OUTPUT_PREFIX = "12scenes_"
_RANGE = re.compile(r"start\s*=\s*(\d+)\s*;\s*end\s*=\s*(\d+)")


def scene_name(folder: Path) -> str:
    """``apt1_kitchen`` for the folder ``.../apt1/kitchen``."""
    return f"{folder.parent.name}_{folder.name}"


def find_scenes(raw_dir: Path) -> dict[str, Path]:
    """{``apt1_kitchen``: folder} of the scenes (folders with split.txt) at most two levels down."""
    if (raw_dir / "split.txt").is_file():
        return {scene_name(raw_dir): raw_dir}
    found = {}
    for split_file in sorted(list(raw_dir.glob("*/split.txt")) + list(raw_dir.glob("*/*/split.txt"))):
        found[scene_name(split_file.parent)] = split_file.parent
    return found


def read_test_range(path: Path) -> tuple[int, int]:
    """(start, end) frame numbers, inclusive, of the first sequence of split.txt (the test split)."""
    for line in require_file(path, "12-Scenes split.txt").read_text().splitlines():
        match = _RANGE.search(line)
        if match:
            start, end = int(match.group(1)), int(match.group(2))
            if end < start:
                raise ConversionError(f"{path}: range end {end} < start {start}")
            return start, end
    raise ConversionError(f"{path}: no '[start=N ; end=M]' range found")


def read_info(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(colour K (3, 3), (height, width) or None) from a 12-Scenes info.txt."""
    entries = {}
    for line in require_file(path, "12-Scenes info.txt").read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            entries[key.strip()] = value.strip()
    if "m_calibrationColorIntrinsic" not in entries:
        raise ConversionError(f"{path}: no m_calibrationColorIntrinsic entry")
    try:
        values = [float(v) for v in entries["m_calibrationColorIntrinsic"].split()]
    except ValueError as exc:
        raise ConversionError(f"{path}: m_calibrationColorIntrinsic is not numeric ({exc})") from exc
    if len(values) != 16:
        raise ConversionError(f"{path}: m_calibrationColorIntrinsic needs 16 numbers (4×4), got {len(values)}")
    K = np.array(values).reshape(4, 4)[:3, :3]
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ConversionError(f"{path}: colour focal lengths must be positive, got {K[0, 0]}, {K[1, 1]}")
    size = None
    if "m_colorWidth" in entries and "m_colorHeight" in entries:
        size = (int(float(entries["m_colorHeight"])), int(float(entries["m_colorWidth"])))
    return K, size


def download_scenes(raw_dir: Path, scenes: list[str]) -> None:
    for archive in sorted({s.split("/")[0] for s in scenes}):
        if (raw_dir / archive).is_dir():
            continue
        extract_zip(download(URL.format(archive=archive), raw_dir / f"{archive}.zip"), raw_dir)


def convert_scene(scene_dir: Path, out_dir: Path, *, pgt: Path | None = None, link: bool = False) -> dict[str, int]:
    """Convert one raw scene folder into ``out_dir``; returns the frame counts per split."""
    from glace_core.dataset import image_size
    from glace_core.preprocess import scale_intrinsics

    name = scene_name(scene_dir)
    data = require_dir(scene_dir / "data", "12-Scenes data folder")
    K, info_hw = read_info(scene_dir / "info.txt")
    test_start, test_end = read_test_range(scene_dir / "split.txt")
    images = sorted(data.glob("frame-*.color.jpg")) + sorted(data.glob("frame-*.color.png"))
    if not images:
        raise ConversionError(f"{data}: no frame-*.color.jpg images")
    actual_hw = image_size(images[0])
    if info_hw is not None and actual_hw != info_hw:
        _logger.info("%s: images are %s, info.txt says %s: scaling K", name, actual_hw, info_hw)
        K = scale_intrinsics(K, info_hw, actual_hw)
    counts = {}
    for split in ("train", "test"):
        listed = lookup_pgt(pgt, name, split) if pgt is not None else None
        writer = SplitWriter(out_dir, split, link=link)
        skipped = 0
        for image in images:
            frame = image.name.split(".", 1)[0]
            number = int(frame.split("-")[-1])
            if (test_start <= number <= test_end) != (split == "test"):
                continue
            calib = K
            if listed is not None:
                entry = listed.get(f"data/{image.name}")
                if entry is None:
                    skipped += 1
                    continue
                pose = entry.pose
                if entry.focal:
                    calib = K.copy()
                    calib[0, 0] = calib[1, 1] = entry.focal
            else:
                pose = read_pose_matrix(require_file(data / f"{frame}.pose.txt", "pose file"))
            pose = checked_pose(pose, str(data / frame))
            if pose is None:
                skipped += 1
                continue
            writer.write(frame, pose, calib, image_src=image)
        counts[split] = writer.finish()
        if skipped:
            _logger.warning("%s %s: %d frames skipped (no valid pose)", name, split, skipped)
    return counts


def convert(raw_dir: Path, out_dir: Path, *, scene: str | None = None, pgt: Path | None = None,
            download_missing: bool = False, link: bool = False) -> dict[str, dict]:
    """Convert every scene (or ``scene``: ``apt1_kitchen`` or ``apt1/kitchen``) into
    ``out_dir/12scenes_<scene>``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    wanted = scene.replace("/", "_") if scene else None
    if download_missing:
        download_scenes(raw_dir, [s for s in SCENES if wanted in (None, s.replace("/", "_"))] or list(SCENES))
    scenes = select_scenes(find_scenes(raw_dir), wanted, "12-Scenes", raw_dir, "split.txt", label=scene)
    return {name: convert_scene(path, out_dir / f"{OUTPUT_PREFIX}{name}", pgt=pgt, link=link)
            for name, path in scenes.items()}
