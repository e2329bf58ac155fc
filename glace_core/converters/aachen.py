"""Aachen Day-Night → DSAC* layout.

Raw layout (the release, unpacked into one folder): ``images_upright/db/*.jpg`` and
``images_upright/query/...``, ``3D-models/aachen_cvpr2018_db.nvm`` (or the .nvm directly in the
folder) and ``queries/{day,night}_time_queries_with_intrinsics.txt`` (lines
``query/day/milestone/x.jpg SIMPLE_RADIAL w h f cx cy k``).

Output ``<out>/aachen/``:
- ``train``: every database image of the NVM model, with its pose (camera centre and
  world-to-camera quaternion → camera-to-world) and its focal length as a single-value calibration
  (principal point at the image centre, as the NVM model assumes; radial distortion ignored).
- ``test``: every query image with its K (f, f, cx, cy from the intrinsics file; distortion
  ignored) and an **identity** pose: Aachen's query poses are withheld (evaluation by submission),
  so ``SceneSplit.has_ground_truth`` is False.
Frame names flatten the image path (``db/1045.jpg`` → ``db_1045``); ``image_names.txt`` in each
split maps every written image back to its original name, for a submission.

Download (``--download``), from https://data.ciirc.cvut.cz/public/projects/2020VisualLocalization/Aachen-Day-Night/:
``images/database_and_query_images.zip``, ``3D-models/aachen_cvpr2018_db.nvm`` and
``queries/{day,night}_time_queries_with_intrinsics.txt``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from glace_core.converters.common import (ConversionError, SplitWriter, checked_pose, download, extract_zip,
                                          read_nvm_cameras, require_dir, require_file)

_logger = logging.getLogger(__name__)

BASE_URL = "https://data.ciirc.cvut.cz/public/projects/2020VisualLocalization/Aachen-Day-Night/"
FILES = ("images/database_and_query_images.zip", "3D-models/aachen_cvpr2018_db.nvm",
         "queries/day_time_queries_with_intrinsics.txt", "queries/night_time_queries_with_intrinsics.txt")
NVM_NAME = "aachen_cvpr2018_db.nvm"
OUTPUT_NAME = "aachen"
# camera model → indices of (fx, fy, cx, cy) in its parameters (COLMAP models)
_MODELS = {"SIMPLE_PINHOLE": (0, 0, 1, 2), "SIMPLE_RADIAL": (0, 0, 1, 2), "RADIAL": (0, 0, 1, 2),
           "PINHOLE": (0, 1, 2, 3), "OPENCV": (0, 1, 2, 3), "FULL_OPENCV": (0, 1, 2, 3)}


def find_nvm(raw_dir: Path) -> Path:
    for candidate in (raw_dir / "3D-models" / NVM_NAME, raw_dir / NVM_NAME):
        if candidate.is_file():
            return candidate
    raise ConversionError(f"Aachen model {NVM_NAME} not found in {raw_dir} or {raw_dir / '3D-models'}")


def read_query_intrinsics(path: Path) -> list[tuple[str, np.ndarray, tuple[int, int]]]:
    """[(query image name, K (3, 3), (height, width))] of a *_queries_with_intrinsics.txt."""
    out = []
    for number, line in enumerate(require_file(path, "query list").read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 4 or parts[1] not in _MODELS:
            raise ConversionError(f"{path}:{number}: expected 'name MODEL w h params...' with MODEL one of "
                                  f"{sorted(_MODELS)}, got {line.strip()[:80]!r}")
        try:
            w, h = int(parts[2]), int(parts[3])
            params = [float(v) for v in parts[4:]]
            fx, fy, cx, cy = (params[i] for i in _MODELS[parts[1]])
        except (ValueError, IndexError) as exc:
            raise ConversionError(f"{path}:{number}: unreadable camera parameters ({exc})") from exc
        if not (fx > 0 and fy > 0 and w > 0 and h > 0):
            raise ConversionError(f"{path}:{number}: focal and image size must be positive")
        out.append((parts[0], np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]), (h, w)))
    return out


def _stem(name: str) -> str:
    return Path(name).with_suffix("").as_posix().replace("/", "_").replace(".", "_")


def convert(raw_dir: Path, out_dir: Path, *, scene: str | None = None, download_missing: bool = False,
            link: bool = False) -> dict[str, dict]:
    """Convert the Aachen Day-Night release in ``raw_dir`` into ``out_dir/aachen``."""
    from glace_core.dataset import image_size
    from glace_core.preprocess import scale_intrinsics

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if scene not in (None, OUTPUT_NAME):
        raise ConversionError(f"Aachen has a single scene; --scene must be omitted or {OUTPUT_NAME!r}, got {scene!r}")
    if download_missing:
        for rel in FILES:
            dest = raw_dir / rel
            if rel.endswith(".zip"):
                if not (raw_dir / "images_upright").is_dir():
                    extract_zip(download(BASE_URL + rel, dest), raw_dir)
            else:
                download(BASE_URL + rel, dest)
    images = require_dir(raw_dir / "images_upright", "Aachen image folder")
    scene_out = out_dir / OUTPUT_NAME

    writer = SplitWriter(scene_out, "train", link=link)
    stems: set[str] = set()
    for name, camera in sorted(read_nvm_cameras(find_nvm(raw_dir)).items()):
        pose = checked_pose(camera.pose, f"{NVM_NAME} camera {name}")
        if pose is None:
            continue
        stem = _stem(name)
        if stem in stems:
            raise ConversionError(f"two images flatten to the same name {stem!r} ({name})")
        stems.add(stem)
        writer.write(stem, pose, camera.focal, image_src=require_file(images / name, "database image"),
                     original=name, rgb_suffix="")
    counts = {"train": writer.finish(write_names=True)}

    query_files = sorted((raw_dir / "queries").glob("*_queries_with_intrinsics.txt"))
    if not query_files:
        raise ConversionError(f"no queries/*_queries_with_intrinsics.txt in {raw_dir}")
    writer = SplitWriter(scene_out, "test", link=link)
    stems = set()
    for query_file in query_files:
        for name, K, hw in read_query_intrinsics(query_file):
            image = require_file(images / name, f"query image of {query_file.name}")
            actual = image_size(image)
            if actual != hw:  # the list's K belongs to the stated size
                K = scale_intrinsics(K, hw, actual)
            if _stem(name) in stems:
                raise ConversionError(f"{query_file}: image {name} is listed twice or flattens to a used name")
            stems.add(_stem(name))
            writer.write(_stem(name), np.eye(4), K, image_src=image, original=name, rgb_suffix="")
    counts["test"] = writer.finish(write_names=True)
    return {OUTPUT_NAME: counts}
