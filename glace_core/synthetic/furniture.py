"""Furniture of the synthetic rooms: boxes standing on the floor, their quads and their placement
(against a wall, long side along it, or free-standing), clear of each other."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Box:
    """A furniture box standing on the floor: centre (x, y), half sizes (hx, hy), height, yaw (rad)."""

    centre: tuple[float, float]
    half: tuple[float, float]
    height: float
    yaw: float
    model: int | None = None  # furniture model (shared size and albedo) in a building; None: its own

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([c, s, 0.0]), np.array([-s, c, 0.0])

    def footprint_distance(self, xy: np.ndarray) -> np.ndarray:
        """Distance (M,) of floor points xy (M, 2) to the box footprint (0 inside)."""
        ex, ey = self.axes()
        rel = np.asarray(xy, np.float64) - np.asarray(self.centre)
        local = np.stack((rel @ ex[:2], rel @ ey[:2]), -1)
        outside = np.maximum(np.abs(local) - np.asarray(self.half), 0.0)
        return np.linalg.norm(outside, axis=-1)


def rect(centre, u_vec, v_vec):
    """The quad (P0, U, V) centred at ``centre`` with full edge vectors ``u_vec``, ``v_vec``."""
    u_vec, v_vec = np.asarray(u_vec, float), np.asarray(v_vec, float)
    return np.asarray(centre, float) - (u_vec + v_vec) / 2, u_vec, v_vec


def box_surfaces(boxes: list[Box], prefix: str = "", first: int = 0) -> tuple[list, list[str]]:
    """Quads (P0, U, V) and names ``{prefix}box{first + b}_side{k}`` / ``_top`` of furniture boxes."""
    quads, names = [], []
    for b, box in enumerate(boxes, start=first):
        ex, ey = box.axes()
        c = np.array([box.centre[0], box.centre[1], box.height / 2])
        for k, (nrm, half_n, half_u) in enumerate(((ex, box.half[0], box.half[1]), (-ex, box.half[0], box.half[1]),
                                                    (ey, box.half[1], box.half[0]), (-ey, box.half[1], box.half[0]))):
            u_dir = np.array([nrm[1], -nrm[0], 0.0])  # u × (-z) = normal: images upright, not mirrored
            quads.append(rect(c + nrm * half_n, u_dir * 2 * half_u, (0, 0, -box.height)))
            names.append(f"{prefix}box{b}_side{k}")
        quads.append(rect(c + np.array([0, 0, box.height / 2]), ex * 2 * box.half[0], ey * 2 * box.half[1]))
        names.append(f"{prefix}box{b}_top")
    return quads, names


def sample_boxes(size: np.ndarray, rng: np.random.Generator) -> list[Box]:
    """3-6 non-overlapping boxes: against a wall, at most one free-standing; clear of each other by 0.6 m."""
    boxes: list[Box] = []
    target = int(rng.integers(3, 7))
    for _ in range(200):
        if len(boxes) == target:
            break
        half = (float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.15, 0.35)))
        height = float(rng.uniform(0.4, min(2.0, size[2] - 0.4)))
        box = place_box(size, half, height, rng, free_ok=not free_standing(boxes, size))
        if box_fits(box, size, boxes):
            boxes.append(box)
    return boxes


def free_standing(boxes: list[Box], size: np.ndarray) -> int:
    """How many of ``boxes`` (in a room [0, size]) stand more than 1 m from every wall."""
    return sum(abs(b.centre[0] - size[0] / 2) < size[0] / 2 - 1.0 and
               abs(b.centre[1] - size[1] / 2) < size[1] / 2 - 1.0 for b in boxes)


def place_box(size: np.ndarray, half: tuple[float, float], height: float, rng: np.random.Generator,
              free_ok: bool = True, model: int | None = None) -> Box:
    """A box of ``half`` sizes in a room [0, size]: 80 % (always unless ``free_ok``) against a random
    wall, its long side along it, 0.03-0.2 m off it; else free-standing at a random yaw."""
    if rng.random() < 0.8 or not free_ok:  # against a wall, its long side along it
        wall = int(rng.integers(4))
        gap = float(rng.uniform(0.03, 0.2))
        along = float(rng.uniform(0.15, 0.85))
        if wall < 2:
            x = along * size[0]
            y = gap + half[1] if wall == 0 else size[1] - gap - half[1]
            yaw = 0.0
        else:
            y = along * size[1]
            x = gap + half[1] if wall == 2 else size[0] - gap - half[1]
            yaw = np.pi / 2
        yaw += float(rng.uniform(-0.08, 0.08))
    else:
        x, y = float(rng.uniform(1.2, size[0] - 1.2)), float(rng.uniform(1.2, size[1] - 1.2))
        yaw = float(rng.uniform(0, np.pi))
    return Box((float(x), float(y)), half, height, float(yaw), model)


def box_fits(box: Box, size: np.ndarray, others: list[Box], spacing: float = 0.6) -> bool:
    """Whether ``box`` lies inside [0, size] (0.02 m margin) and ``spacing`` clear of ``others``."""
    pts = corners(box)
    if np.any(pts < 0.02) or np.any(pts > size[:2] - 0.02):
        return False
    return not any(np.any(other.footprint_distance(pts) < spacing)
                   or np.any(box.footprint_distance(corners(other)) < spacing) for other in others)


def corners(box: Box) -> np.ndarray:
    ex, ey = box.axes()
    c = np.asarray(box.centre)
    return np.array([c + sx * box.half[0] * ex[:2] + sy * box.half[1] * ey[:2] for sx in (-1, 1) for sy in (-1, 1)])
