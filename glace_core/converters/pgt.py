"""Pseudo-ground-truth (pGT) pose lists for 7-Scenes and 12-Scenes.

The SfM pGT of Brachmann et al., "On the Limits of Pseudo Ground Truth in Visual Camera
Re-Localization" (ICCV 2021; github.com/tsattler/visloc_pseudo_gt_limitations, folder
``pgt/sfm/{7scenes,12scenes}``) has one file per scene and split, ``<scene>_<split>.txt``
(e.g. ``chess_train.txt``, ``apt1_kitchen_test.txt``), with lines

    rgb_file qw qx qy qz tx ty tz f

where (q, t) map world to camera coordinates (p_cam = R(q)·p_world + t, the COLMAP convention) and
f is the focal length re-estimated by COLMAP. ``rgb_file`` is relative to the scene folder
(``seq-01/frame-000000.color.png``, ``data/frame-000178.color.jpg``); lines need not be sorted.
"""
from __future__ import annotations

from pathlib import Path

from glace_core.converters.common import ConversionError, ListedPose, read_pose_list


class PgtPoses:
    """Poses of one pGT list, looked up by the last two components of an image path."""

    def __init__(self, entries: dict[str, ListedPose], source: Path):
        self.source = source
        self._entries = {self._key(name): entry for name, entry in entries.items()}

    @staticmethod
    def _key(name: str) -> str:
        return "/".join(Path(name.replace("\\", "/")).parts[-2:])

    def get(self, relative_name: str) -> ListedPose | None:
        return self._entries.get(self._key(relative_name))

    def __len__(self) -> int:
        return len(self._entries)


def lookup_pgt(pgt: Path, scene: str, split: str) -> PgtPoses:
    """The pGT poses of ``scene``/``split``: ``pgt`` is a folder with ``<scene>_<split>.txt`` or a
    single list file used for both splits."""
    pgt = Path(pgt)
    if pgt.is_dir():
        path = pgt / f"{scene}_{split}.txt"
        if not path.is_file():
            raise ConversionError(f"pGT folder {pgt} has no {path.name} for scene {scene!r}, split {split!r}")
    elif pgt.is_file():
        path = pgt
    else:
        raise ConversionError(f"pGT poses not found: {pgt}")
    return PgtPoses(read_pose_list(path), path)
