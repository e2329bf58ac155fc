"""Held-out scenes and their maps for the benchmarks, built once and cached in a work folder.

``scene(work, name, seed, flags)`` runs ``glace-make-scene`` (250 train / 50 test frames at 480x640
unless ``flags`` say otherwise) into ``work/name`` unless it is there; ``trained_map(scene_dir, preset,
extra)`` runs ``glace-train`` into ``scene_dir/map_<preset>.pt`` unless it is there and records the
mapping wall time in ``map_<preset>.seconds`` beside it. Both print what they do. Used by
bench/covariance.py and bench/hard_scenes.py, so the two share maps.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SIZE = ["--n-train", "250", "--n-test", "50"]


def scene(work: Path, name: str, seed: int, flags: list[str] | None = None) -> Path:
    """The scene folder ``work/name`` (generated with ``--seed seed`` and ``flags`` when missing)."""
    root = Path(work) / name
    if not (root / "test").is_dir():
        cmd = ["glace-make-scene", str(root), "--seed", str(seed), *DEFAULT_SIZE, *(flags or [])]
        print(f"[bench] {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return root


def trained_map(scene_dir: Path, preset: str = "cpu", extra: list[str] | None = None, label: str | None = None
                ) -> tuple[Path, float]:
    """(map path, mapping wall seconds) of ``glace-train scene --preset preset extra`` (cached)."""
    label = label or preset
    path = Path(scene_dir) / f"map_{label}.pt"
    seconds = path.with_suffix(".seconds")
    if not path.is_file() or not seconds.is_file():
        cmd = [sys.executable, "-m", "glace_ros.train_from_bag", str(scene_dir), str(path), "--preset", preset,
               "--no-progress", *(extra or [])]
        print(f"[bench] glace-train {scene_dir.name} ({label})", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds.write_text(f"{time.perf_counter() - t0:.1f}\n")
    return path, float(seconds.read_text())
