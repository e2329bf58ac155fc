"""Held-out scenes and their maps for the benchmarks, built once and cached in a work folder.

``scene(work, name, seed, flags)`` runs ``glace-make-scene`` (250 train / 50 test frames at 480x640
unless ``flags`` say otherwise) into ``work/name`` unless it is there; ``trained_map(scene_dir, preset,
extra)`` runs ``glace-train`` into ``scene_dir/map_<preset>.pt`` unless it is there and records the
mapping wall time in ``map_<preset>.seconds`` beside it. A cached map is reused only when the
training options its sidecar records are the ones ``glace-train --preset preset extra`` resolves to
today (``stale_reason``): a preset whose defaults changed since (the cpu preset's ``use_depth``, for
one) retrains instead of silently measuring the old map, as does a map whose sidecar lacks
``network_focal_px`` (the Localizer's focal matching would be off for it) or an XFeat map whose
sidecar lacks ``pad_multiple`` (its encoder input was padded the old way). Both print what they do. Used by
bench/covariance.py and bench/hard_scenes.py, so the two share maps.
"""
from __future__ import annotations

import json
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


def _as_recorded(config) -> dict:
    """A TrainConfig as a map's sidecar records it (JSON types: tuples become lists)."""
    return json.loads(json.dumps(config.to_dict()))


def expected_config(scene_dir: Path, map_path: Path, preset: str, extra: list[str] | None = None) -> dict:
    """The training record ``glace-train scene_dir map_path --preset preset extra`` would write today:
    its TrainConfig as the sidecar stores it, and ``depth_supervision`` (what ``use_depth`` resolves
    to on this scene)."""
    from glace_core.cli.train import config_from_args
    from glace_core.dataset import SceneSplit
    from glace_core.training.trainer import depth_supervision

    _, config = config_from_args([str(scene_dir), str(map_path), "--preset", preset, *(extra or [])])
    return {"config": _as_recorded(config),
            "depth_supervision": depth_supervision(config, SceneSplit(scene_dir, "train"))}


def stale_reason(map_path: Path, expected: dict) -> str | None:
    """Why the map at ``map_path`` is not what ``expected`` (``expected_config``) trains, or None.

    ``use_depth`` is compared by what it resolved to (``depth_supervision``: "auto" on a scene with
    depth trains as "on" does). An option the sidecar lacks was added to glace-train after the map
    was made; it counts as the TrainConfig default, the behaviour of glace-train before it existed.
    ``keyframe_keypoints`` does not change the heads: ``trained_map`` adds a missing keyframes file instead."""
    from glace_core.encoder_registry import map_pad_multiple
    from glace_core.map_files import mapping_poses, training_focal
    from glace_core.training.config import TrainConfig
    from glace_core.xfeat_encoder import XFEAT_PAD_MULTIPLE

    sidecar = Path(f"{map_path}.json")
    try:
        sidecar_data = json.loads(sidecar.read_text())
        training = sidecar_data["training"]
        recorded = {**_as_recorded(TrainConfig()), **training["config"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{sidecar.name} records no training options ({type(exc).__name__}: {exc})"
    wanted = expected["config"]
    differ = [f"{k}={recorded.get(k)!r} (now {wanted[k]!r})" for k in sorted(wanted)
              if k not in ("use_depth", "preset", "keyframe_keypoints") and recorded.get(k) != wanted[k]]
    had_depth = bool(training.get("depth_supervision", False))
    if had_depth != expected["depth_supervision"]:
        differ.append(f"depth supervision {'on' if had_depth else 'off'} (now "
                      f"{'on' if expected['depth_supervision'] else 'off'})")
    if training_focal(sidecar_data) is None:  # the Localizer's focal matching reads it (off without it)
        differ.append("no network_focal_px (made before glace-train recorded it; focal matching would be off)")
    if mapping_poses(sidecar_data) is None:  # the covariance's distance from the mapping views reads them
        differ.append("no mapping_poses (made before glace-train recorded them; the covariance would assume a distance)")
    if map_pad_multiple(sidecar_data) != XFEAT_PAD_MULTIPLE:  # what the Localizer will pad this map's input to
        differ.append("XFeat without pad_multiple (made before 2026-12-04: its input padded to multiples of 8)")
    return "trained with " + ", ".join(differ) if differ else None


def training_spec(spec: str) -> tuple[str, list[str], str]:
    """``preset[+option=value...]`` (e.g. ``cpu+use_depth=on``) -> (preset, extra glace-train flags,
    map label)."""
    preset, *options = spec.split("+")
    extra, label = [], preset
    for option in options:
        name, sep, value = option.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"{option!r} is not option=value (in {spec!r})")
        extra += [f"--{name}", value]
        label += f"_{name}-{value}"
    return preset, extra, label


def glace_train(scene_dir: Path, map_path: Path, preset: str, extra: list[str] | None = None) -> float:
    """Wall seconds of ``glace-train scene_dir map_path --preset preset extra`` in its own process."""
    cmd = [sys.executable, "-m", "glace_ros.train_from_bag", str(scene_dir), str(map_path), "--preset", preset,
           "--no-progress", *(extra or [])]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def trained_map(scene_dir: Path, preset: str = "cpu", extra: list[str] | None = None, label: str | None = None
                ) -> tuple[Path, float]:
    """(map path, mapping wall seconds) of ``glace-train scene --preset preset extra`` (cached; a
    cached map trained with other options than these resolve to today is trained again). A cached map
    made before glace-train wrote keyframes gets them from ``glace-keyframes``, whose seconds are added."""
    label = label or preset
    path = Path(scene_dir) / f"map_{label}.pt"
    seconds = path.with_suffix(".seconds")
    if path.is_file() and seconds.is_file():
        expected = expected_config(scene_dir, path, preset, extra)
        reason = stale_reason(path, expected)
        if reason is None:
            return path, float(seconds.read_text()) + _keyframes_seconds(scene_dir, path, expected)
        print(f"[bench] {path} is stale, training it again: {reason}", flush=True)
    print(f"[bench] glace-train {scene_dir.name} ({label})", flush=True)
    Path(f"{path}.keyframes.seconds").unlink(missing_ok=True)
    seconds.write_text(f"{glace_train(scene_dir, path, preset, extra):.1f}\n")
    return path, float(seconds.read_text())


def _keyframes_seconds(scene_dir: Path, map_path: Path, expected: dict) -> float:
    """Seconds the keyframes of a cached map took when glace-keyframes (not glace-train) wrote them, after
    writing them when ``expected`` asks for keyframes and the map has none (0 when glace-train did)."""
    from glace_core.dataset import SceneSplit
    from glace_core.keyframes import load_map_keyframes, write_map_keyframes

    record = Path(f"{map_path}.keyframes.seconds")
    want = int(expected["config"].get("keyframe_keypoints", 0))
    if want > 0 and load_map_keyframes(map_path) is None:
        print(f"[bench] glace-keyframes {scene_dir.name} ({map_path.name})", flush=True)
        t0 = time.perf_counter()
        write_map_keyframes(map_path, SceneSplit(scene_dir, "train"), max_keypoints=want)
        record.write_text(f"{time.perf_counter() - t0:.1f}\n")
    return float(record.read_text()) if record.is_file() else 0.0
