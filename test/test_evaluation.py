"""glace-eval: the poses-file line, the summary, and glace-train -> glace-eval end to end."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from glace_core.evaluation import FrameRecord, poses_file_line, summarize
from training_fixtures import small_scene

ENCODER = "xfeat"  # the shipped default encoder, named explicitly
RES = 96  # images are rendered at 96 x 128: no resize


def _parse(line):
    v = line.split()
    qw, qx, qy, qz, tx, ty, tz = map(float, v[1:8])
    w2c = np.eye(4)
    w2c[:3, :3] = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
    w2c[:3, 3] = (tx, ty, tz)
    return v[0], w2c, np.array([qw, qx, qy, qz]), float(v[8]), float(v[9]), int(v[10])


def test_poses_file_line_identity_and_inverse():
    line = poses_file_line("a.png", np.eye(4), 0.0, 0.0, 7)
    assert line.split()[:8] == ["a.png", "1.000000000"] + ["0.000000000"] * 3 + ["0.000000000"] * 3
    assert len(line.split()) == 11 and line.split()[10] == "7"
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("xyz", [170, -20, 95], degrees=True).as_matrix()
    c2w[:3, 3] = [1.0, -2.0, 3.5]
    name, w2c, q, r_err, t_err, inliers = _parse(poses_file_line("b.png", c2w, 1.5, 0.25, 42))
    np.testing.assert_allclose(w2c, np.linalg.inv(c2w), atol=1e-7)  # world -> camera
    assert (name, r_err, t_err, inliers) == ("b.png", 1.5, 0.25, 42)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-8) and q[0] >= 0
    half_turn = np.diag([1.0, -1.0, -1.0, 1.0])  # 180 degrees about x: qw = 0
    _, w2c, q, *_ = _parse(poses_file_line("c.png", half_turn, math.nan, math.nan, 0))
    np.testing.assert_allclose(w2c, half_turn, atol=1e-7)
    assert "nan nan 0" in poses_file_line("c.png", half_turn, math.nan, math.nan, 0)
    with pytest.raises(ValueError, match="without spaces"):
        poses_file_line("a b.png", np.eye(4), 0, 0, 0)
    with pytest.raises(ValueError, match="finite"):
        poses_file_line("a.png", np.full((4, 4), np.nan), 0, 0, 0)


def test_summary_counts_failures_and_uses_the_reference_median():
    records = [FrameRecord(str(i), f"{i}.png", np.eye(4), True, 10, t, r, {"encoder": 0.1, "head": 0.01, "ransac": 0.02})
               for i, (t, r) in enumerate([(0.004, 0.5), (0.03, 1.0), (0.2, 1.0)])]
    records.append(FrameRecord("3", "3.png", None, False, 0, math.inf, math.inf, {"encoder": 0.1, "head": 0.01,
                                                                                "ransac": 0.02}))
    s = summarize(records)
    assert s["frames"] == 4 and s["localised"] == 3
    assert s["median_t_cm"] == pytest.approx(20.0) and s["median_r_deg"] == pytest.approx(1.0)  # sorted[n // 2]
    assert s["avg_time_s"] == pytest.approx(0.13)
    # the keyframe refinement's time counts too (a frame of it: 0.02 s more per frame on average)
    records[0].times["refine"] = 0.08
    assert summarize(records)["avg_time_s"] == pytest.approx(0.15)
    assert summarize(records)["time_per_frame_s"]["refine"] == pytest.approx(0.02)
    values = sorted(float(v) for k, v in s["accuracy"].items() if "median" not in k)
    assert values and max(values) == pytest.approx(50.0)  # 2 of 4 within 10 cm / 5 deg, the failure never
    no_gt = summarize(records, with_gt=False)
    assert math.isnan(no_gt["median_t_cm"]) and no_gt["accuracy"] == {}


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    torch.set_num_threads(2)
    return small_scene(tmp_path_factory.mktemp("eval") / "scene", seed=3, n_train=24, n_test=6)


@pytest.fixture(scope="module")
def trained_map(scene, tmp_path_factory):
    from glace_core.cli.train import main as train_main

    out = tmp_path_factory.mktemp("trained") / "map.pt"
    # evaluated on its training views: without augmentation 300 iterations fit them to ~1 px
    code = train_main([str(scene), str(out), "--preset", "cpu", "--encoder_path", ENCODER, "--image_resolution",
                       str(RES), "--max_iterations", "300", "--batch_size", "2048", "--training_buffer_size",
                       "49152", "--use_aug", "False", "--no-progress"])
    assert code == 0 and out.is_file()
    return out


@pytest.fixture(scope="module")
def untrained_map(scene, tmp_path_factory):
    """A randomly initialised head of the cpu preset's shape, offset at the mean camera centre."""
    from glace_core.encoder_registry import encoder_sidecar_entry, resolve_encoder
    from glace_core.head import GlaceHead
    from glace_core.map_files import save_head
    from glace_core.training.config import PRESETS

    torch.manual_seed(0)
    head = GlaceHead(local_channels=64, global_channels=0, head_channels=PRESETS["cpu"]["head_channels"])
    centres = np.stack([np.loadtxt(p)[:3, 3] for p in sorted((scene / "train" / "poses").glob("*.txt"))])
    head.set_mean(centres.mean(axis=0))
    out = tmp_path_factory.mktemp("untrained") / "map.pt"
    save_head(head, out, {"encoder": encoder_sidecar_entry(resolve_encoder(ENCODER))})
    return out


def _eval(scene, map_path, split, capsys, *extra):
    from glace_core.cli.evaluate import main as eval_main

    code = eval_main([str(scene), str(map_path), "--encoder_path", ENCODER, "--image_resolution", str(RES),
                      "--split", split, "--session", split, "--no-progress", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    poses = map_path.parent / f"poses_{scene.name}_{split}.txt"
    test = map_path.parent / f"test_{scene.name}_{split}.txt"
    return poses, test, out


def test_trained_map_beats_an_untrained_head(scene, trained_map, untrained_map, capsys):
    medians = {}
    for label, map_path in (("trained", trained_map), ("untrained", untrained_map)):
        poses, test, out = _eval(scene, map_path, "train", capsys)
        lines = poses.read_text().splitlines()
        assert len(lines) == 24
        gt = {p.stem: np.loadtxt(p) for p in (scene / "train" / "poses").glob("*.txt")}
        t_errs = []
        for line in lines:
            name, w2c, q, r_err, t_err, inliers = _parse(line)
            assert name.endswith(".png") and np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6)
            c2w_gt = gt[name[:-4]]
            assert t_err == pytest.approx(np.linalg.norm(np.linalg.inv(w2c)[:3, 3] - c2w_gt[:3, 3]), abs=1e-5)
            t_errs.append(t_err)
        median_r, median_t_cm, avg_time = map(float, test.read_text().split())
        assert median_t_cm == pytest.approx(100 * sorted(t_errs)[len(t_errs) // 2], abs=1e-3) and avg_time > 0
        for text in ("median error", "avg time per frame", "encoder", "RANSAC", "%"):
            assert text in out
        medians[label] = median_t_cm
    assert medians["trained"] < 0.2 * medians["untrained"], medians


def test_eval_without_ground_truth_writes_nan_errors(scene, trained_map, tmp_path, capsys):
    blind = tmp_path / "blind"
    shutil.copytree(scene / "test", blind / "test")
    for p in (blind / "test" / "poses").glob("*.txt"):
        np.savetxt(p, np.eye(4))
    map_copy = tmp_path / "map.pt"
    shutil.copy(trained_map, map_copy)
    shutil.copy(str(trained_map) + ".json", str(map_copy) + ".json")
    poses, test, out = _eval(blind, map_copy, "test", capsys)
    lines = poses.read_text().splitlines()
    assert len(lines) == 6 and all(line.split()[8:10] == ["nan", "nan"] for line in lines)
    assert "no ground truth" in out


def test_eval_refuses_a_map_of_another_encoder(scene, trained_map, capsys):
    from glace_core.cli.evaluate import main as eval_main

    code = eval_main([str(scene), str(trained_map), "--encoder_path", "ace-random:0", "--image_resolution", "96"])
    assert code == 2 and "error" in capsys.readouterr().err


def test_fast_and_plain_inference_give_the_same_poses(scene, trained_map, capsys):
    """glace-eval's CPU fast path (default) and --plain_inference: same poses for the same seed. Both in
    fp32 (``--precision fp32``: on a CPU with bf16 the default ``auto`` runs the fast path in bf16,
    compared with fp32 in test_precision.py)."""
    results = {}
    for label, extra in (("fast", ("--precision", "fp32")), ("plain", ("--plain_inference",))):
        poses, _, out = _eval(scene, trained_map, "test", capsys, *extra)
        assert "encoder" in out and "RANSAC" in out
        results[label] = [_parse(line) for line in poses.read_text().splitlines()]
    assert len(results["fast"]) == len(results["plain"]) == 6
    for fast, plain in zip(results["fast"], results["plain"]):
        assert fast[0] == plain[0]
        np.testing.assert_allclose(fast[1], plain[1], atol=1e-3)  # poses from coordinates equal within 1e-4 rel.
        assert abs(fast[5] - plain[5]) <= max(2, 0.02 * plain[5])  # inlier counts


def test_a_zero_image_resolution_is_refused(scene, trained_map):
    from glace_core.evaluation import evaluate_scene

    with pytest.raises(ValueError, match="image_resolution must be > 0"):
        evaluate_scene(scene, trained_map, image_resolution=0, encoder_path=ENCODER)


def test_the_cpu_preset_map_is_an_ensemble_whose_heads_fit_their_clusters(scene, trained_map):
    """24 mapping frames: the cpu preset's 16 clusters are capped at 2 heads; each head's offset is the
    mean camera centre of its own cluster, and the evaluation keeps poses from both heads."""
    from glace_core.evaluation import evaluate_scene
    from glace_core.head_ensemble import HeadEnsemble
    from glace_core.network import load_map

    ensemble = load_map(trained_map)
    assert isinstance(ensemble, HeadEnsemble) and len(ensemble) == 2
    centres = np.stack([np.loadtxt(p)[:3, 3] for p in sorted((scene / "train" / "poses").glob("*.txt"))])
    member = ensemble.membership.numpy() > 0
    assert member.shape == (2, 24) and member.any(axis=0).all()
    for k in range(2):
        np.testing.assert_allclose(ensemble.heads[k].mean.flatten().numpy(), centres[member[k]].mean(axis=0),
                                   atol=2e-3)  # fp16 file
    assert ensemble.metadata["ensemble"]["frames_per_head"] == member.sum(axis=1).tolist()
    result = evaluate_scene(scene, trained_map, split="train", encoder_path=ENCODER, image_resolution=RES,
                            device="cpu", ensemble_candidates=1)
    chosen = np.array([r.head for r in result.frames])
    assert set(chosen) == {0, 1}
    # with one candidate a training frame is answered by a head it trained
    assert all(member[k, i] for i, k in enumerate(chosen))
    assert result.summary["median_t_cm"] < 10.0


def test_output_names_without_a_session(tmp_path):
    """poses_<scene>.txt and test_<scene>.txt (not poses_<scene>_.txt) when no session is given."""
    from glace_core.evaluation import EvalResult, FrameRecord, summarize, write_eval_outputs

    frames = [FrameRecord("f0", "f0.png", np.eye(4), True, 50, 0.01, 0.5, {"network": 0.02})]
    result = EvalResult("room", frames, summarize(frames))
    poses, test = write_eval_outputs(result, tmp_path / "map.pt")
    assert (poses.name, test.name) == ("poses_room.txt", "test_room.txt")
    poses, test = write_eval_outputs(result, tmp_path / "map.pt", session="run2")
    assert (poses.name, test.name) == ("poses_room_run2.txt", "test_room_run2.txt")


def test_frames_are_timed_after_a_warm_up_for_their_size(scene, trained_map, monkeypatch):
    """glace-eval warms the localizer up once per image size before its first frame, so graph builds
    are not counted in the per-frame times (the node warms up at start-up the same way)."""
    from glace_core.evaluation import evaluate_scene
    from glace_core.localizer import Localizer

    calls: list[tuple] = []
    warm_up, localize = Localizer.warm_up, Localizer.localize

    def record_warm_up(self, height, width, options=None, K=None):
        calls.append(("warm_up", height, width))
        return warm_up(self, height, width, options, K)

    def record_localize(self, rgb, K, **kwargs):
        calls.append(("localize", *rgb.shape[:2]))
        return localize(self, rgb, K, **kwargs)

    monkeypatch.setattr(Localizer, "warm_up", record_warm_up)
    monkeypatch.setattr(Localizer, "localize", record_localize)
    result = evaluate_scene(scene, trained_map, split="test", encoder_path=ENCODER, image_resolution=RES, device="cpu")
    frames = [c for c in calls if c[0] == "localize"]
    warm = [c for c in calls if c[0] == "warm_up"]
    assert len(result.frames) == 6 and len(warm) == 1
    # the warm-up's own localize call comes first; every real frame of that size comes after it
    assert calls.index(warm[0]) == 0 and warm[0][1:] == frames[-1][1:]
    assert len(frames) == 6 + 1
