"""bench/bench_scenes.py: a cached benchmark map is reused only when it was trained with the options
its preset resolves to today (a preset whose defaults changed retrains instead of being measured
stale). Uses the tiny scene's real map and the sidecar the real trainer wrote."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from relocalizer_scene import TRAIN_OPTIONS

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bs = _load("bench_scenes")


def _reason(tiny_scene, extra):
    return bs.stale_reason(tiny_scene.map_path, bs.expected_config(tiny_scene.root, tiny_scene.map_path, "cpu", extra))


def test_a_map_trained_with_the_same_options_is_current(tiny_scene):
    assert _reason(tiny_scene, TRAIN_OPTIONS) is None


def test_a_map_trained_with_other_options_is_stale_and_the_reason_names_them(tiny_scene):
    reason = _reason(tiny_scene, [*TRAIN_OPTIONS, "--max_iterations", "999", "--use_depth", "off"])
    assert "max_iterations=300 (now 999)" in reason
    # the tiny scene has depth/: the cpu preset's use_depth auto trained with depth
    assert "depth supervision on (now off)" in reason


def test_use_depth_is_compared_by_what_it_resolved_to(tiny_scene):
    # "on" and the preset's "auto" train the same on a scene with depth
    assert _reason(tiny_scene, [*TRAIN_OPTIONS, "--use_depth", "on"]) is None


def test_a_sidecar_without_training_record_is_stale(tiny_scene, tmp_path):
    map_path = tmp_path / "map_cpu.pt"
    shutil.copy(tiny_scene.map_path, map_path)
    Path(f"{map_path}.json").write_text('{"format": "glace-ros-map"}')
    expected = bs.expected_config(tiny_scene.root, map_path, "cpu", TRAIN_OPTIONS)
    assert "records no training options" in bs.stale_reason(map_path, expected)


def _reason_without(tiny_scene, tmp_path, entry: str, key: str) -> str | None:
    """stale_reason of a copy of the tiny map whose sidecar lacks ``sidecar[entry][key]``."""
    map_path = tmp_path / "map_cpu.pt"
    shutil.copy(tiny_scene.map_path, map_path)
    sidecar = json.loads(Path(f"{tiny_scene.map_path}.json").read_text())
    del sidecar[entry][key]
    Path(f"{map_path}.json").write_text(json.dumps(sidecar))
    return bs.stale_reason(map_path, bs.expected_config(tiny_scene.root, map_path, "cpu", TRAIN_OPTIONS))


def test_a_sidecar_without_the_mapping_focal_is_stale(tiny_scene, tmp_path):
    assert "no network_focal_px" in _reason_without(tiny_scene, tmp_path, "training", "network_focal_px")


def test_a_sidecar_without_the_mapping_poses_is_stale(tiny_scene, tmp_path):
    assert "no mapping_poses" in _reason_without(tiny_scene, tmp_path, "training", "mapping_poses")


def test_an_xfeat_map_without_its_padding_is_stale(tiny_scene, tmp_path):
    assert "XFeat without pad_multiple" in _reason_without(tiny_scene, tmp_path, "encoder", "pad_multiple")


def test_trained_map_reuses_a_current_map_and_retrains_a_stale_one(tiny_scene, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bs.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    # the cache lives in the scene folder: a copy of the real map and sidecar under the bench's name
    work = tmp_path / "work"
    shutil.copytree(tiny_scene.root, work, symlinks=True)
    cached = work / "map_cpu.pt"
    shutil.copy(tiny_scene.map_path, cached)
    shutil.copy(f"{tiny_scene.map_path}.json", f"{cached}.json")
    cached.with_suffix(".seconds").write_text("12.5\n")

    # a map made before glace-train wrote keyframes gets them (not a new training), their time added
    path, seconds = bs.trained_map(work, "cpu", TRAIN_OPTIONS)
    keyframes_seconds = float(Path(f"{cached}.keyframes.seconds").read_text())
    assert (path, calls) == (cached, []) and seconds == pytest.approx(12.5 + keyframes_seconds)
    assert Path(f"{cached}.keyframes.npz").is_file() and "glace-keyframes" in capsys.readouterr().out
    assert bs.trained_map(work, "cpu", TRAIN_OPTIONS) == (path, seconds) and calls == []

    bs.trained_map(work, "cpu", [*TRAIN_OPTIONS, "--max_iterations", "999"])
    assert len(calls) == 1 and calls[0][-2:] == ["--max_iterations", "999"]
    assert "is stale, training it again: trained with max_iterations=300 (now 999)" in capsys.readouterr().out
