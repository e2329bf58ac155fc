"""dsac_native's matching and detection reductions (row_column_maxima, local_maxima) against numpy/torch
references, bad input, the baseline copy, and mutual_nn built on them."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dsac_native
from glace_core.keypoint_matching import mutual_nn


def _maxima_reference(sim: np.ndarray):
    """numpy's row maxima (NaN ignored), their first columns, and column maxima."""
    clean = np.where(np.isnan(sim), -np.inf, sim)
    best = clean.max(1)
    arg = np.where(np.isneginf(best), -1, clean.argmax(1))
    return best.astype(np.float32), arg, clean.max(0).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (17, 8), (64, 37), (200, 3072)])
def test_row_column_maxima_equals_numpy(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    sim = np.round(rng.uniform(-1, 1, shape), 2).astype(np.float32)  # rounded: ties in rows and columns
    best, arg, column_max = dsac_native.row_column_maxima(sim)
    ref = _maxima_reference(sim)
    assert best.dtype == np.float32 and arg.dtype == np.int64 and column_max.dtype == np.float32
    for ours, theirs in zip((best, arg, column_max), ref):
        np.testing.assert_array_equal(ours, theirs)


def test_row_column_maxima_ignores_nan_and_flags_empty_rows():
    sim = np.array([[np.nan, 0.5, 0.7, np.nan, 0.1, 0.2, 0.3, 0.4, 0.9],
                    [-np.inf] * 9,
                    [np.nan] * 9], dtype=np.float32)
    best, arg, column_max = dsac_native.row_column_maxima(sim)
    assert best[0] == np.float32(0.9) and arg[0] == 8
    assert list(arg[1:]) == [-1, -1] and np.isneginf(best[1:]).all()
    np.testing.assert_array_equal(column_max, _maxima_reference(sim)[2])
    assert np.isneginf(column_max[0]) and column_max[2] == np.float32(0.7)


def _peaks_reference(heat: np.ndarray, radius: int, threshold: float, max_count: int):
    """XFeat's NMS as torch writes it: max_pool2d == heat and > threshold, strongest first (stable)."""
    h = torch.from_numpy(heat)[None, None]
    local = F.max_pool2d(h, 2 * radius + 1, stride=1, padding=radius)
    rows, cols = torch.nonzero(((h == local) & (h > threshold))[0, 0], as_tuple=True)
    order = torch.argsort(-torch.from_numpy(heat)[rows, cols], stable=True)[:max_count]
    return rows[order].numpy(), cols[order].numpy()


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_local_maxima_equals_torch(radius):
    rng = np.random.default_rng(radius)
    heat = np.round(rng.uniform(0, 1, (61, 83)) ** 4, 2).astype(np.float32)  # plateaus: ties between peaks
    for max_count in (0, 5, 100, 10**6):
        rows, cols = dsac_native.local_maxima(heat, radius=radius, threshold=0.05, max_count=max_count)
        ref_rows, ref_cols = _peaks_reference(heat, radius, 0.05, max_count)
        assert rows.dtype == np.int64
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_array_equal(cols, ref_cols)
    assert len(ref_rows) > 10  # the test saw peaks, some at the borders
    assert {0, heat.shape[0] - 1} & set(ref_rows.tolist()) or {0, heat.shape[1] - 1} & set(ref_cols.tolist())


def test_local_maxima_nan_is_no_peak_and_blocks_none():
    heat = np.zeros((5, 5), np.float32)
    heat[2, 2], heat[2, 3], heat[0, 0] = 0.5, np.nan, np.nan
    rows, cols = dsac_native.local_maxima(heat, radius=2, threshold=0.05, max_count=10)
    assert list(zip(rows, cols)) == [(2, 2)]


@pytest.mark.parametrize("call, message", [
    (lambda: dsac_native.row_column_maxima(np.zeros(3, np.float32)), "shape (N, M)"),
    (lambda: dsac_native.row_column_maxima(np.zeros((2, 3))), "float32"),
    (lambda: dsac_native.row_column_maxima(np.zeros((4, 6), np.float32)[:, ::2]), "C-contiguous"),
    (lambda: dsac_native.local_maxima(np.zeros((2, 3, 1), np.float32), radius=1, threshold=0, max_count=1),
     "shape (H, W)"),
    (lambda: dsac_native.local_maxima(np.zeros((2, 3), np.float16), radius=1, threshold=0, max_count=1), "float32"),
    (lambda: dsac_native.local_maxima(np.zeros((2, 3), np.float32), radius=-1, threshold=0, max_count=1), "radius"),
    (lambda: dsac_native.local_maxima(np.zeros((2, 3), np.float32), radius=1, threshold=0, max_count=-2),
     "max_count"),
])
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_baseline_copy_gives_the_same_maxima():
    """DSAC_NATIVE_ISA=baseline (a fresh process) runs the baseline copy of the matrix pass: the same result."""
    script = ("import json, numpy as np, dsac_native\n"
              "sim = np.round(np.random.default_rng(3).uniform(-1, 1, (50, 101)), 2).astype(np.float32)\n"
              "b, a, c = dsac_native.row_column_maxima(sim)\n"
              "print(json.dumps([dsac_native.kernel_isa(), b.tolist(), a.tolist(), c.tolist()]))")
    runs = {}
    for isa in ("auto", "baseline"):
        out = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, DSAC_NATIVE_ISA=isa),
                             capture_output=True, text=True, check=True)
        runs[isa] = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs["baseline"][0] == "baseline"
    assert runs["auto"][1:] == runs["baseline"][1:]


def test_mutual_nn_equals_the_brute_force_definition():
    """Pairs (i, j): j is i's first best row of b, no row of a beats i on j, cosine >= the floor."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(300, 64)).astype(np.float32)
    b = np.concatenate([a[:200] + 0.3 * rng.normal(size=(200, 64)), rng.normal(size=(700, 64))]).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sim = a @ b.T
    expected = [(i, int(sim[i].argmax())) for i in range(len(a))
                if sim[i].max() >= sim[:, sim[i].argmax()].max() and sim[i].max() >= 0.5]
    ia, ib = mutual_nn(a, b, min_cosine=0.5)
    assert ia.dtype == np.int64 and ib.dtype == np.int64
    assert list(zip(ia.tolist(), ib.tolist())) == expected
    assert 100 < len(expected) < 300
