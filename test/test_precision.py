"""Inference precision (glace_core.cpu_features, bf16 in glace_core.fast_inference) and the parallel
RANSAC of candidate heads (Localizer._solve), on the tiny scene and its ensemble map."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from glace_core import cpu_features
from glace_core.cpu_features import ENV_VAR, resolve_precision
from glace_core.fast_inference import FastInferenceConfig, FastModule, FoldedHead, to_bfloat16
from glace_core.head import GlaceHead
from glace_core.localizer import Localizer, LocalizerOptions, RansacOptions, RefinementOptions


def test_precision_follows_the_cpu_features(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "")  # a CPU without bf16
    assert cpu_features.cpu_features() == frozenset() and not cpu_features.has_bf16()
    assert resolve_precision("auto") == ("fp32", None)
    assert resolve_precision("fp32") == ("fp32", None)
    precision, reason = resolve_precision("bf16")
    assert precision == "fp32" and "bf16" in reason and ENV_VAR in reason
    for flags in ("avx512_bf16", "AMX_BF16", "avx2, amx_bf16"):
        monkeypatch.setenv(ENV_VAR, flags)
        assert resolve_precision("auto") == ("bf16", None) and resolve_precision("bf16") == ("bf16", None)
        assert resolve_precision("fp32") == ("fp32", None)
        assert resolve_precision("auto", "cuda") == ("fp32", None)  # CUDA keeps its fp16 autocast
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="precision"):
        LocalizerOptions(precision="int8")
    with pytest.raises(ValueError, match="precision"):
        FastInferenceConfig(precision="auto")


def test_the_probe_reads_this_cpu(monkeypatch):
    """Without the variable the probe answers; on this CPU it agrees with /proc/cpuinfo when readable."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    found = cpu_features.cpu_features()
    assert found <= cpu_features.BF16_FEATURES
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags")
    assert ("avx512_bf16" in found) == ("avx512_bf16" in flags)


def test_to_bfloat16_keeps_the_output_layer_and_buffers_in_float32():
    torch.manual_seed(0)
    head = GlaceHead(local_channels=16, global_channels=8, head_channels=32, num_decoder_clusters=3).eval()
    head.set_centers(np.array([[10.0, 0, 0], [0, 20.0, 0], [0, 0, 30.0]]))
    folded = to_bfloat16(FoldedHead(head))
    assert folded.first.weight.dtype == torch.bfloat16 and folded.head.fc2.weight.dtype == torch.bfloat16
    assert folded.head.fc3.weight.dtype == torch.float32 and folded.head.fcc.weight.dtype == torch.float32
    assert folded.head.centers.dtype == torch.float32 and folded.first_global_weight.dtype == torch.float32
    feats, g = torch.randn(1, 16, 6, 8), torch.randn(1, 8)
    with torch.no_grad():
        ours, ref = folded(feats, g), head(feats, g)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ref, atol=0.05 * float(ref.abs().max()))  # bf16 has 8 mantissa bits
    assert not torch.equal(ours, ref)  # it did run in bf16


def test_to_bfloat16_keeps_the_layers_an_encoder_lists_in_float32():
    """The XFeat encoder's first blocks and output layer stay float32 inside a wrapper (prefixes are
    relative to the module that lists them), its other convolutions run bf16, and the features match
    fp32 closely."""
    from glace_core.xfeat_encoder import XFeatEncoder

    encoder = XFeatEncoder()
    wrapper = torch.nn.Sequential(encoder)  # listed names are relative to the encoder, not the root
    image = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        ref = encoder(image)
    to_bfloat16(wrapper)
    dtypes = {name: layer.weight.dtype for name, layer in wrapper.named_modules()
              if isinstance(layer, torch.nn.Conv2d)}
    assert dtypes["0.net.skip1.1"] == dtypes["0.net.block1.0.layer.0"] == dtypes["0.net.block2.1.layer.0"] \
        == dtypes["0.net.block_fusion.2"] == torch.float32
    assert dtypes["0.net.block3.0.layer.0"] == dtypes["0.net.block_fusion.0.layer.0"] == torch.bfloat16
    assert dtypes["0.net.block5.3.layer.0"] == torch.bfloat16
    with torch.no_grad():
        ours = wrapper(image)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, ref, atol=0.1 * float(ref.abs().max())) and not torch.equal(ours, ref)


def test_bf16_graph_records_the_casts():
    """The frozen graph of a bf16 FastModule computes in bf16 (its output is bf16) and matches fp32 closely."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 8, 1)).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    x = torch.randn(1, 1, 16, 20)
    fp32, bf16 = FastModule(net), FastModule(net, FastInferenceConfig(precision="bf16"))
    a, b = fp32(x), bf16(x)
    assert len(bf16._cache.graphs) == 1 and not bf16._cache.failed
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    assert torch.allclose(a, b.float(), atol=0.05 * float(a.abs().max()))


def _localize_all(localizer: Localizer, scene, options: LocalizerOptions):
    return [localizer.localize(f.rgb, f.K, options=options) for f in scene.frames]


def test_bf16_and_fp32_give_the_same_poses(tiny_scene, monkeypatch):
    """bf16 (forced: GLACE_CPU_FEATURES says the CPU has it) against fp32 on the tiny scene, frame by frame.

    What this scene can resolve sets the bounds: at 96x128 px (f = 102 px, walls several metres away)
    a pixel spans centimetres, RANSAC sees 192 cells, and the fp32 poses' own standard deviations
    (their covariance) are 2.6-97 cm and 0.5-3 deg; 0.1 % noise on the fp32 scene coordinates alone
    moves them by up to 0.6 cm / 0.1 deg. So the poses are compared in units of their own
    uncertainty (squared Mahalanobis distance; measured values below), and the scene
    coordinates in pixels under the fp32 pose (measured: median shift <= 0.45 px; 3D shift <= 1 % of
    the depth, bf16's 8-bit mantissa). The 0.5 cm / 0.1 deg bar of the issue belongs to 480x640
    frames of a fully trained map (the demo scene).
    """
    from glace_core.geometry import invert_pose, project_camera_points, transform_points
    from glace_core.pose_covariance import mahalanobis_squared, pose_error_vector

    monkeypatch.setenv(ENV_VAR, "avx512_bf16")
    # the regression's poses: the keyframe refinement (tested in test_keyframes.py) would replace them
    base = LocalizerOptions(image_resolution=tiny_scene.resolution, ensemble_candidates=2, global_mode="off",
                            refinement=RefinementOptions(enabled=False))
    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu")
    fp32 = _localize_all(localizer, tiny_scene, dataclasses.replace(base, precision="fp32"))
    assert localizer._predictor.precision == "fp32"
    auto = _localize_all(localizer, tiny_scene, base)  # auto: bf16 on this (simulated) CPU; the fast path is rebuilt
    assert localizer.precision() == "bf16" and localizer._predictor.precision == "bf16"
    distances = []
    for a, b in zip(fp32, auto):
        assert not np.array_equal(a.scene_coordinates, b.scene_coordinates)  # bf16 did run
        assert (a.success, a.head_index) == (b.success, b.head_index)
        if not a.success:
            continue
        world_to_camera = invert_pose(a.camera_to_world)
        cam_a, cam_b = (transform_points(world_to_camera, sc.reshape(3, -1).T.astype(np.float64))
                        for sc in (a.scene_coordinates, b.scene_coordinates))
        in_front = (cam_a[:, 2] > 0.1) & (cam_b[:, 2] > 0.1)  # cells predicted behind the camera do not project
        assert in_front.mean() > 0.9
        cam_a, cam_b = cam_a[in_front], cam_b[in_front]
        shift_px = np.linalg.norm(project_camera_points(cam_a, a.K_network)[0]
                                  - project_camera_points(cam_b, a.K_network)[0], axis=1)
        assert np.isfinite(shift_px).all() and np.median(shift_px) < 1.0  # cells are 8 px apart, the inlier threshold is 10 px
        assert np.median(np.linalg.norm(cam_a - cam_b, axis=1)) < 0.02 * np.median(cam_a[:, 2])
        assert abs(a.inlier_count - b.inlier_count) <= 0.05 * a.num_cells
        distances.append(mahalanobis_squared(pose_error_vector(b.camera_to_world, a.camera_to_world),
                                             a.covariance))
    assert len(distances) >= len(fp32) // 2
    # bf16 moves a pose by about its own stated uncertainty at most: every frame inside the
    # chi-square(6) 99.9 % bound (22.46), and half of them within d2 = 1, far inside the distribution's
    # own median (5.35). Measured on this map's 8 frames: emulated bf16 (AVX2) median 0.05, max 4.8;
    # native bf16 (Zen 5) with all of XFeat in bf16 median 0.49, max 3.0, and with its first blocks and
    # output layer in fp32 (today) median 0.30, max 13.3 on the one frame whose fp32 pose is weakest;
    # Intel AMX (Xeon, family 6 model 207) median 0.57, max 11.1 (0.57 also with oneDNN held to
    # AVX512_CORE_BF16: the three weakest frames' RANSAC picks other hypotheses, d2 3.3-11). 50 frames at
    # 480x640 against the 0.5 cm / 0.1 deg: the slow test below.
    assert max(distances) < 22.46 and np.median(distances) < 1.0, distances


def test_bf16_request_runs_fp32_on_a_cpu_without_it(tiny_scene, monkeypatch, caplog):
    monkeypatch.setenv(ENV_VAR, "")
    monkeypatch.setenv("GLACE_GRAPH_OPTIMIZE", "on")  # the same graph in both localizers: bitwise equal outputs
    options = LocalizerOptions(image_resolution=tiny_scene.resolution, global_mode="off", precision="bf16")
    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu", options=options)
    frame = tiny_scene.frames[tiny_scene.good_frame]
    with caplog.at_level(logging.WARNING, logger="glace_core.localizer"):
        bf16 = localizer.localize(frame.rgb, frame.K)
    assert localizer.precision() == "fp32" and localizer._predictor.precision == "fp32"
    assert any("bf16" in r.getMessage() and ENV_VAR in r.getMessage() for r in caplog.records)
    fp32 = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu").localize(
        frame.rgb, frame.K, options=dataclasses.replace(options, precision="fp32"))
    assert np.array_equal(bf16.scene_coordinates, fp32.scene_coordinates)


@pytest.mark.parametrize("fusion", ["best", "union"])
def test_parallel_ransac_of_the_candidates_gives_the_same_poses(tiny_scene, monkeypatch, fusion):
    """Every head of the tiny ensemble: solved at the same time (num_threads 0, two cores) and one after
    another (num_threads 1) give identical poses, inlier counts and winners; so does their union
    solved with two threads and with one."""
    import glace_core.localizer as localizer_module

    monkeypatch.setattr(localizer_module, "_cores", lambda: 2)
    localizer = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu")
    assert localizer.model is not None and len(localizer.model) >= 2
    common = dict(image_resolution=tiny_scene.resolution, ensemble_candidates=0, early_accept_ratio=0.0, global_mode="off",
                  precision="fp32", ensemble_fusion=fusion)
    parallel = _localize_all(localizer, tiny_scene, LocalizerOptions(**common, ransac=RansacOptions(num_threads=0)))
    if fusion == "best":
        assert localizer._ransac_pool is not None  # the candidates were solved concurrently
    sequential = _localize_all(localizer, tiny_scene, LocalizerOptions(**common, ransac=RansacOptions(num_threads=1)))
    assert any(a.success for a in parallel)
    for a, b in zip(parallel, sequential):
        assert len(a.candidates) == len(localizer.model) and a.candidates == b.candidates
        assert (a.success, a.head_index, a.inlier_count) == (b.success, b.head_index, b.inlier_count)
        if a.success:
            assert np.array_equal(a.camera_to_world, b.camera_to_world)


@pytest.mark.slow
def test_bf16_and_fp32_give_the_same_poses_on_the_demo_scene(tmp_path, monkeypatch):
    """Issue 17's bar on the demo scene (``make demo``'s room, 480x640, seed 7), mapped by the fast
    preset in fp32: bf16 inference (forced by GLACE_CPU_FEATURES; oneDNN emulates it on CPUs without
    bf16, slowly) moves the median pose by <= 0.5 cm and 0.1 deg from fp32, and the number of frames
    within 5 cm/5 deg by at most 3 of 50. Measured on a Zen 5 CPU (native bf16): median change 0.18 cm /
    0.05 deg on this map; within 5 cm/5 deg 48 (fp32) against 48 in one process and 45 in another,
    because the fast path keeps whichever of two oneDNN graphs timed faster and they round bf16
    differently (fp32: the same 48 either way). The demo's cpu-preset map: 49 against 48."""
    import subprocess

    from glace_core.dataset import SceneSplit
    from glace_core.geometry import pose_errors

    scene, map_path = tmp_path / "scene", tmp_path / "map.pt"
    subprocess.run(["glace-make-scene", str(scene), "--seed", "7", "--n-train", "250", "--n-test", "50",
                    "--resolution", "480x640"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["glace-train", str(scene), str(map_path), "--preset", "fast", "--precision", "fp32",
                    "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    monkeypatch.setenv(ENV_VAR, "avx512_bf16")
    localizer = Localizer.load(map_path, device="cpu")
    split = SceneSplit(scene, "test")
    frames = [(split.load_rgb(i), split[i].K, np.asarray(split[i].pose)) for i in range(len(split))]
    poses, within = {}, {}
    for precision in ("fp32", "auto"):
        results = [localizer.localize(rgb, K, options=dataclasses.replace(localizer.options, precision=precision))
                   for rgb, K, _ in frames]
        assert localizer._predictor.precision == {"fp32": "fp32", "auto": "bf16"}[precision]
        assert all(r.success for r in results)
        poses[precision] = [r.camera_to_world for r in results]
        errors = [pose_errors(r.camera_to_world, gt) for r, (_, _, gt) in zip(results, frames)]
        within[precision] = sum(t < 0.05 and r < 5.0 for t, r in errors)
    change = np.array([pose_errors(a, b) for a, b in zip(poses["auto"], poses["fp32"])])
    assert np.median(change[:, 0]) <= 0.005 and np.median(change[:, 1]) <= 0.1, np.median(change, axis=0)
    assert not np.array_equal(poses["auto"], poses["fp32"])  # bf16 did run
    assert abs(within["auto"] - within["fp32"]) <= 3 and within["fp32"] >= 40, within
