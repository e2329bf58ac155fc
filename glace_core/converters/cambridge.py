"""Cambridge Landmarks → DSAC* layout.

Raw layout (one folder per scene, as unpacked from the release): ``dataset_train.txt`` and
``dataset_test.txt`` (3 header lines, then ``seq1/frame00001.png X Y Z W P Q R``: the camera
centre in world coordinates and the world-to-camera rotation as quaternion w, x, y, z),
``reconstruction.nvm`` (the SfM model; only its per-image focal lengths are used, which refer to
the raw 1920×1080 images) and the images ``seqN/frameNNNNN.png``.

Output ``<out>/Cambridge_<Scene>/{train,test}``: frames named ``seq1_frame00001``; images resized
as the reference does (PIL bilinear, shorter side ``resolution`` = 480: 1920×1080 → 853×480; 0
copies them unchanged); calibration the full 3×3 K of the written image: the NVM focal with the
principal point at the centre, scaled per axis with the resize (fx·W'/W, fy·H'/H).

Download (``--download``): https://www.repository.cam.ac.uk/bitstream/handle/1810/<id>/<Scene>.zip
with the ids in ``URLS``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from glace_core.converters.common import (ConversionError, SplitWriter, checked_pose, download, extract_zip,
                                          pose_from_centre, read_nvm_cameras, require_file, resize_image,
                                          select_scenes)
from glace_core.geometry import focal_K

_logger = logging.getLogger(__name__)

URLS = {
    "GreatCourt": "https://www.repository.cam.ac.uk/bitstream/handle/1810/251291/GreatCourt.zip",
    "KingsCollege": "https://www.repository.cam.ac.uk/bitstream/handle/1810/251342/KingsCollege.zip",
    "OldHospital": "https://www.repository.cam.ac.uk/bitstream/handle/1810/251340/OldHospital.zip",
    "ShopFacade": "https://www.repository.cam.ac.uk/bitstream/handle/1810/251336/ShopFacade.zip",
    "StMarysChurch": "https://www.repository.cam.ac.uk/bitstream/handle/1810/251294/StMarysChurch.zip",
}
OUTPUT_PREFIX = "Cambridge_"
HEADER_LINES = 3


def find_scenes(raw_dir: Path) -> dict[str, Path]:
    """{scene: folder} of folders holding dataset_train.txt (``raw_dir`` itself or its children)."""
    if (raw_dir / "dataset_train.txt").is_file():
        return {raw_dir.name: raw_dir}
    return {p.parent.name: p.parent for p in sorted(raw_dir.glob("*/dataset_train.txt"))}


def read_image_list(path: Path) -> list[tuple[str, np.ndarray]]:
    """[(image name, camera-to-world (4, 4))] of a dataset_{train,test}.txt."""
    lines = require_file(path, "Cambridge image list").read_text().splitlines()
    out = []
    for number, line in enumerate(lines[HEADER_LINES:], HEADER_LINES + 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 8:
            raise ConversionError(f"{path}:{number}: expected 'image X Y Z W P Q R', got {len(parts)} fields")
        try:
            values = [float(v) for v in parts[1:]]
        except ValueError as exc:
            raise ConversionError(f"{path}:{number}: {exc}") from exc
        out.append((parts[0], pose_from_centre(values[3:7], values[:3])))
    if not out:
        raise ConversionError(f"{path} lists no images")
    return out


def _stem(name: str) -> str:
    return Path(name).with_suffix("").as_posix()


def convert_scene(scene_dir: Path, out_dir: Path, *, resolution: int = 480, link: bool = False) -> dict[str, int]:
    """Convert one raw scene folder into ``out_dir``; returns the frame counts per split."""
    from glace_core.dataset import read_rgb
    from glace_core.preprocess import scale_intrinsics

    focals = {_stem(name): cam.focal for name, cam in read_nvm_cameras(scene_dir / "reconstruction.nvm").items()}
    counts = {}
    for split in ("train", "test"):
        writer = SplitWriter(out_dir, split, link=link and resolution == 0)
        skipped = 0
        for name, pose in read_image_list(scene_dir / f"dataset_{split}.txt"):
            image_path = require_file(scene_dir / name, f"image of dataset_{split}.txt")
            focal = focals.get(_stem(name))
            if focal is None:
                raise ConversionError(f"{scene_dir / 'reconstruction.nvm'} has no camera for {name}")
            pose = checked_pose(pose, f"{scene_dir.name} {name}")
            if pose is None:
                skipped += 1
                continue
            stem = _stem(name).replace("/", "_").replace(".", "_")
            if resolution:
                rgb = read_rgb(image_path)
                small = resize_image(rgb, resolution)
                K = scale_intrinsics(focal_K(focal, *rgb.shape[:2]), rgb.shape[:2], small.shape[:2])
                writer.write(stem, pose, K, image=small, original=name)
            else:
                writer.write(stem, pose, focal, image_src=image_path, original=name)
        counts[split] = writer.finish()
        if skipped:
            _logger.warning("%s %s: %d frames skipped (no valid pose)", scene_dir.name, split, skipped)
    return counts


def convert(raw_dir: Path, out_dir: Path, *, scene: str | None = None, download_missing: bool = False,
            resolution: int = 480, link: bool = False) -> dict[str, dict]:
    """Convert every scene (or ``scene``) of ``raw_dir`` into ``out_dir/Cambridge_<Scene>``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if resolution < 0:
        raise ValueError(f"resolution must be >= 0 (0 keeps the raw images), got {resolution}")
    if download_missing:
        if scene is not None and scene not in URLS:
            raise ConversionError(f"no download URL for Cambridge scene {scene!r} (known: {sorted(URLS)})")
        for name in [scene] if scene else sorted(URLS):
            if not (raw_dir / name / "dataset_train.txt").is_file():
                extract_zip(download(URLS[name], raw_dir / f"{name}.zip"), raw_dir)
    scenes = select_scenes(find_scenes(raw_dir), scene, "Cambridge", raw_dir, "dataset_train.txt")
    return {name: convert_scene(path, out_dir / f"{OUTPUT_PREFIX}{name}", resolution=resolution, link=link)
            for name, path in scenes.items()}
