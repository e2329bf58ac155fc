"""Synthetic DSAC*-layout scenes: procedural rooms (or buildings of rooms joined by corridors)
textured with real photo collages or paint, rendered with moderngl/EGL or, when no GL context can
be made, a pure-PyTorch ray-caster.

``make_scene(root, seed=3, n_train=48, n_test=6)`` writes ``root/{train,test}/{rgb,poses,
calibration,depth}`` and ``root/scene.json``; see ``writer`` for the layout and ``scene`` for the
options. Same seed, options and backend → bit-identical files.
"""
from __future__ import annotations

import importlib

#: Public names and the module each lives in. They load on first use (PEP 562), so the GL renderer's
#: child process, which imports only ``camera``, ``room`` and ``render_gl``, starts without torch.
_EXPORTS = {"TEXTURES": "build", "build_room": "build", "build_rooms": "build", "Camera": "camera", "Room": "room",
            "BACKENDS": "scene", "LIGHTINGS": "build", "SceneConfig": "scene", "SceneInfo": "scene",
            "make_renderer": "scene", "make_scene": "scene", "TRAJECTORIES": "trajectory",
            "make_trajectory": "trajectory", "nearest_view_distances": "views"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
