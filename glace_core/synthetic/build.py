"""Textured rooms: geometry (one room, or a building of several) plus albedo (photo collages or
paint) times baked lighting, for the mapping split and, with changed test lighting, for the test
split (same geometry and albedo, another lighting baked)."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from glace_core.synthetic.atlas import bake_atlases
from glace_core.synthetic.building import MAX_ROOMS, building_geometry
from glace_core.synthetic.lighting import Lighting, changed_lighting, default_lighting
from glace_core.synthetic.paint import SparseAlbedo, surface_kind
from glace_core.synthetic.room import Room, room_geometry
from glace_core.synthetic.textures import collage

_logger = logging.getLogger(__name__)

TEXTURES = ("dense", "sparse")
LIGHTINGS = ("same", "changed")  # of the test split


@dataclass
class Rooms:
    """The scene's room as the mapping split sees it (``train``) and as the test split does
    (``test``: the same object unless the test lighting changed)."""

    train: Room
    test: Room
    test_lighting: Lighting | None = None  # the changed test lighting, None when it is the same


def _shared_furniture(room: Room, albedo):
    """``albedo`` with one draw per furniture model face: every instance of a model looks the same."""
    cache: dict = {}

    def shared(q: int, height: int, width: int) -> np.ndarray:
        kind, _, b = surface_kind(room.names[q])
        model = room.boxes[b].model if kind == "box" else None
        if model is None:
            return albedo(q, height, width)
        key = (model, room.names[q].rsplit("_", 1)[1], height, width)
        if key not in cache:
            cache[key] = albedo(q, height, width)
        return cache[key]

    return shared


def build_rooms(seed: int | np.random.SeedSequence, texels_per_m: float = 200.0, texture: str = "dense",
                rooms: int = 1, test_lighting: str = "same") -> Rooms:
    """The textured room (``rooms`` = 1) or building for ``seed``; deterministic for a seed. With
    ``test_lighting="changed"`` the test room has the same geometry and albedo under another
    lighting (``lighting.changed_lighting``); the train room is the same as with "same"."""
    if texture not in TEXTURES:
        raise ValueError(f"texture must be one of {TEXTURES}, got {texture!r}")
    if not 1 <= int(rooms) <= MAX_ROOMS:
        raise ValueError(f"rooms must be in [1, {MAX_ROOMS}], got {rooms}")
    if test_lighting not in LIGHTINGS:
        raise ValueError(f"test_lighting must be one of {LIGHTINGS}, got {test_lighting!r}")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    geo_ss, tex_ss, light_ss, relight_ss = ss.spawn(4)
    rng = np.random.default_rng(geo_ss)
    room = room_geometry(rng, texels_per_m) if rooms == 1 else building_geometry(int(rooms), rng, texels_per_m)
    lightings = [default_lighting(room.lights)]
    if test_lighting == "changed":
        lightings.append(changed_lighting(room, np.random.default_rng(relight_ss)))
    tex_rng = np.random.default_rng(tex_ss)
    if texture == "dense":
        def albedo(q, h, w):
            return collage(h, w, texels_per_m, tex_rng)
    else:
        albedo = SparseAlbedo(room, tex_rng)
    pyramids = bake_atlases(room, _shared_furniture(room, albedo), lightings, np.random.default_rng(light_ss))
    room.pyramid = pyramids[0]
    _logger.debug("room %s m, %d boxes, %d quads, atlas %s", room.size.round(2), len(room.boxes), len(room.names),
                  room.atlas.shape)
    if len(lightings) == 1:
        return Rooms(room, room)
    test = dataclasses.replace(room, lights=lightings[1].positions, pyramid=pyramids[1])
    return Rooms(room, test, lightings[1])


def build_room(seed: int | np.random.SeedSequence, texels_per_m: float = 200.0, texture: str = "dense",
               rooms: int = 1) -> Room:
    """A random textured room (or building of ``rooms`` rooms) for ``seed``: size, furniture, ceiling
    lights, and the texture atlas (albedo × baked lighting) with its mip pyramid."""
    return build_rooms(seed, texels_per_m, texture, rooms).train
