"""dsac_native: exact recovery, robustness to outliers, intrinsics, determinism, degenerate inputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dsac_native  # a missing build must fail the suite, not skip it

H, W, S = 60, 80, 8


def random_rotation(rng):
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def make_grid(seed, outliers=0.0, noise_px=0.0, fx=500.0, fy=500.0, cx=320.0, cy=240.0, h=H, w=W):
    """Scene coordinates (3, h, w) float32 of a random camera (cam-to-world (4, 4)) seeing depths 1-5 m."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    u = S * xs + S / 2 + rng.normal(0, noise_px, (h, w)) if noise_px else S * xs + S / 2.0
    v = S * ys + S / 2 + rng.normal(0, noise_px, (h, w)) if noise_px else S * ys + S / 2.0
    d = rng.uniform(1, 5, (h, w))
    pts_cam = np.stack([(u - cx) / fx * d, (v - cy) / fy * d, d], -1)
    R, t = random_rotation(rng), rng.uniform(-3, 3, 3)
    pts = pts_cam @ R.T + t
    mask = rng.random((h, w)) < outliers
    pts[mask] = rng.uniform(-5, 5, (int(mask.sum()), 3)) + t
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = R, t
    return np.ascontiguousarray(pts.transpose(2, 0, 1), dtype=np.float32), pose


def pose_errors(est, gt):
    t_err = np.linalg.norm(est[:3, 3] - gt[:3, 3])
    cos = (np.trace(est[:3, :3] @ gt[:3, :3].T) - 1) / 2
    return t_err, np.degrees(np.arccos(np.clip(cos, -1, 1)))


def test_exact_recovery_noise_free():
    sc, gt = make_grid(1)
    r = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=3)
    assert r.success and r.inlier_count == H * W
    assert r.camera_to_world.dtype == np.float64 and r.camera_to_world.shape == (4, 4)
    t_err, r_err = pose_errors(r.camera_to_world, gt)
    assert t_err < 1e-5 and r_err < 1e-4
    assert r.stats.valid_cells == H * W and r.stats.hypotheses_scored == 64
    assert 0 < r.stats.score <= 100.0


@pytest.mark.parametrize("outliers", [0.5, 0.8, 0.9])
def test_accuracy_under_noise_and_outliers(outliers):
    sc, gt = make_grid(10 + int(outliers * 10), outliers=outliers, noise_px=1.0)
    r = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0)
    assert r.success
    t_err, r_err = pose_errors(r.camera_to_world, gt)
    assert t_err < 0.02 and r_err < 0.5
    expected = (1 - outliers) * H * W
    assert 0.9 * expected < r.inlier_count < 1.1 * expected + 20


def test_separate_focal_lengths_and_off_centre_principal_point():
    sc, gt = make_grid(4, outliers=0.3, fx=600.0, fy=450.0, cx=300.0, cy=260.0)
    r = dsac_native.estimate_pose(sc, 600.0, 450.0, 300.0, 260.0)
    t_err, r_err = pose_errors(r.camera_to_world, gt)
    assert r.success and t_err < 1e-4 and r_err < 1e-3
    # the same data read with the wrong (swapped) focal lengths does not fit as well
    wrong = dsac_native.estimate_pose(sc, 450.0, 600.0, 300.0, 260.0)
    assert wrong.inlier_count < 0.8 * r.inlier_count


def test_correspondence_form_matches_grid_form():
    sc, gt = make_grid(5, outliers=0.5, noise_px=0.5)
    ys, xs = np.mgrid[0:H, 0:W]
    pixels = np.stack([S * xs + 4.0, S * ys + 4.0], -1).reshape(-1, 2)
    points = np.ascontiguousarray(sc.reshape(3, -1).T, dtype=np.float64)
    a = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=7)
    b = dsac_native.estimate_pose_from_correspondences(pixels, points, 500.0, 500.0, 320.0, 240.0, seed=7)
    assert a.success and b.success
    assert np.allclose(a.camera_to_world, b.camera_to_world, atol=1e-4)
    assert pose_errors(b.camera_to_world, gt)[0] < 0.01


def test_same_seed_same_pose_for_any_thread_count():
    sc, _ = make_grid(6, outliers=0.85, noise_px=1.0)
    results = [dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=11, num_threads=n) for n in (1, 2, 4)]
    for r in results[1:]:
        assert np.array_equal(r.camera_to_world, results[0].camera_to_world)
        assert r.inlier_count == results[0].inlier_count
        assert r.stats.hypotheses_generated == results[0].stats.hypotheses_generated
    assert results[2].stats.num_threads == 4
    other = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=12, num_threads=1)
    assert not np.array_equal(other.camera_to_world, results[0].camera_to_world)


def test_non_finite_cells_are_skipped():
    sc, gt = make_grid(7, noise_px=0.5)
    sc[:, :, :40] = np.nan
    sc[0, 5:10, 50:60] = np.inf
    r = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0)
    assert r.stats.valid_cells == H * 40 - 50 and r.success
    assert pose_errors(r.camera_to_world, gt)[0] < 0.01


def test_degenerate_inputs_fail_cleanly():
    nan = np.full((3, H, W), np.nan, dtype=np.float32)
    r = dsac_native.estimate_pose(nan, 500.0, 500.0, 320.0, 240.0)
    assert not r.success and r.inlier_count == 0 and r.stats.valid_cells == 0
    assert np.array_equal(r.camera_to_world, np.eye(4))

    three = nan.copy()
    three[:, 0, :3] = [[0, 1, 2], [0, 0, 1], [3, 3, 4]]
    r = dsac_native.estimate_pose(three, 500.0, 500.0, 320.0, 240.0)
    assert not r.success and r.stats.valid_cells == 3

    collinear = np.zeros((3, H, W), dtype=np.float32)
    collinear[0] = np.linspace(-1, 1, H * W).reshape(H, W)
    collinear[2] = 3.0
    r = dsac_native.estimate_pose(collinear, 500.0, 500.0, 320.0, 240.0, max_candidates=1000)
    assert not r.success and r.stats.hypotheses_valid == 0

    sc, _ = make_grid(8)
    for fx, fy in ((0.0, 500.0), (500.0, -1.0), (float("nan"), 500.0), (float("inf"), 500.0)):
        with pytest.raises(ValueError, match="focal"):
            dsac_native.estimate_pose(sc, fx, fy, 320.0, 240.0)


def test_bad_arrays_raise_value_error_naming_the_problem():
    sc, _ = make_grid(9)
    with pytest.raises(ValueError, match="float32"):
        dsac_native.estimate_pose(sc.astype(np.float64), 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        dsac_native.estimate_pose(sc[:2].copy(), 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        dsac_native.estimate_pose(sc[0].copy(), 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="contiguous"):
        dsac_native.estimate_pose(sc[:, :, ::2], 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="hypotheses"):
        dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, hypotheses=0)
    pixels, points = np.zeros((10, 2)), np.zeros((10, 3))
    with pytest.raises(ValueError, match="pixels"):
        dsac_native.estimate_pose_from_correspondences(np.zeros((10, 3)), points, 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="same number of rows"):
        dsac_native.estimate_pose_from_correspondences(pixels, points[:9], 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="float32 or float64"):
        dsac_native.estimate_pose_from_correspondences(pixels.astype(np.int64), points, 500.0, 500.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="contiguous"):
        dsac_native.estimate_pose_from_correspondences(pixels, np.zeros((3, 10)).T, 500.0, 500.0, 320.0, 240.0)


def test_options_class_rejects_misspelt_fields_and_drives_the_solver():
    opts = dsac_native.Options()
    assert opts.hypotheses == 64 and opts.threshold == 10.0 and opts.max_reprojection_error == 100.0
    with pytest.raises(AttributeError):
        opts.hypothesis = 10
    with pytest.raises(TypeError):
        dsac_native.estimate_pose(np.zeros((3, 4, 4), np.float32), 1.0, 1.0, 0.0, 0.0, hypothesis=10)
    opts.hypotheses, opts.seed = 16, 5
    sc, gt = make_grid(2, outliers=0.5, noise_px=0.5)
    r = dsac_native.estimate_pose_with_options(sc, 500.0, 500.0, 320.0, 240.0, 8, opts)
    assert r.success and r.stats.hypotheses_scored == 16
    with pytest.raises(AttributeError):
        r.stats.scor  # noqa: B018
    same = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, hypotheses=16, seed=5)
    assert np.array_equal(same.camera_to_world, r.camera_to_world)


def test_parallel_scoring_of_many_hypotheses_is_deterministic_and_accurate():
    # 256 hypotheses x 4800 cells is scored on the thread pool with the exact early exit
    sc, gt = make_grid(8, outliers=0.9, noise_px=1.0)
    results = [dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, hypotheses=256, seed=5, num_threads=n)
               for n in (1, 3)]
    a, b = results
    assert a.success and a.stats.hypotheses_scored == 256
    assert np.array_equal(a.camera_to_world, b.camera_to_world) and a.stats.score == b.stats.score
    t_err, r_err = pose_errors(a.camera_to_world, gt)
    assert t_err < 0.02 and r_err < 0.5


def test_soft_score_matches_dsac_formula_for_exact_fit():
    # noise-free grid: the best hypothesis reprojects every cell with error ~0, so the soft score
    # is alpha * (1 - sigmoid(-beta * threshold)) = 100 / (1 + exp(-5)) up to float32 rounding
    sc, _ = make_grid(2)
    r = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=1)
    assert r.stats.score == pytest.approx(100.0 / (1.0 + np.exp(-5.0)), rel=1e-4)


def test_very_high_outlier_ratio():
    sc, gt = make_grid(9, outliers=0.95, noise_px=1.0)
    r = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=2)
    assert r.success
    t_err, r_err = pose_errors(r.camera_to_world, gt)
    assert t_err < 0.05 and r_err < 1.0


def test_baseline_kernels_give_the_avx2_result_bit_for_bit():
    """DSAC_NATIVE_ISA=baseline (a fresh process) runs the baseline copies of the scoring kernels; they
    must give the same pose, inliers and score as the copies this CPU picks (the same float operations)."""
    script = ("import json, numpy as np, dsac_native, test_dsac_native as t\n"
              "sc, _ = t.make_grid(21, outliers=0.6, noise_px=1.0)\n"
              "r = dsac_native.estimate_pose(sc, 500.0, 500.0, 320.0, 240.0, seed=5, num_threads=1)\n"
              "print(json.dumps([dsac_native.kernel_isa(), r.camera_to_world.tolist(), r.inlier_count, r.stats.score]))")
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    runs = {}
    for isa in ("auto", "baseline"):
        env = dict(os.environ, DSAC_NATIVE_ISA=isa, PYTHONPATH=path)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        runs[isa] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["baseline"][0] == "baseline"
    assert runs["auto"][0] == dsac_native.kernel_isa() and runs["auto"][0] in ("avx2", "baseline")
    assert runs["auto"][1:] == runs["baseline"][1:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF linkage is a Linux question")
def test_extension_carries_its_own_libstdcxx():
    """setup.py links libstdc++ statically and hidden: an extension built by a newer g++ than the
    libstdc++ torch loads crashed at import otherwise. It must not list libstdc++ as a needed library."""
    import shutil

    readelf = shutil.which("readelf")
    assert readelf, "readelf (binutils) is installed with the compiler that built the extension"
    from dsac_native import _dsac_native

    dynamic = subprocess.run([readelf, "-d", _dsac_native.__file__], capture_output=True, text=True, check=True).stdout
    needed = [line for line in dynamic.splitlines() if "(NEEDED)" in line]
    assert needed and not any("libstdc++" in line for line in needed), needed
