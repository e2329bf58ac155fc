"""Synthetic scenes (glace_core.synthetic, glace-make-scene): geometry exactness of the written
depth and poses, determinism, GL/PyTorch agreement, trajectories, the loader and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic_fixtures import backproject as _backproject
from synthetic_fixtures import gl_or_skip as _gl_or_skip
from synthetic_fixtures import room_from_json as _room_from_json

from glace_core.dataset import SceneSplit
from glace_core.synthetic import Camera, make_scene
from glace_core.synthetic.trajectory import WALL_CLEARANCE

H, W = 60, 80


@pytest.fixture(scope="module", params=["torch", "gl"])
def scene(request, tmp_path_factory):
    if request.param == "gl":
        _gl_or_skip()
    root = tmp_path_factory.mktemp(f"synthetic_{request.param}") / "scene"
    info = make_scene(root, seed=5, n_train=6, n_test=3, resolution=(120, 160), backend=request.param)
    assert info.backend == request.param
    return root, info


def test_loader_reads_scene(scene):
    root, info = scene
    train, test = SceneSplit(root, "train"), SceneSplit(root, "test")
    assert (len(train), len(test)) == (6, 3) and info.counts == {"train": 6, "test": 3}
    assert train.has_depth and test.has_depth
    assert train.names[0] == "frame-000000.color.png"
    K = train.intrinsics(2)
    np.testing.assert_allclose(K, info.K)
    assert (K[0, 2], K[1, 2]) == (80.0, 60.0) and K[0, 0] == K[1, 1] == 131.25
    assert train.load_rgb(0).shape == (120, 160, 3) and train.load_rgb(0).std() > 20  # textured, not flat
    depth = train.load_depth_m(0)
    assert (depth > 0).all() and depth.max() < 10  # a closed room: every pixel sees a surface


def test_backprojected_depth_lies_on_the_room_within_1mm(scene):
    """Depth (mm PNG) + pose + K put every pixel on an analytic surface of the room: < 1 mm."""
    root, _ = scene
    room = _room_from_json(root)
    for split_name in ("train", "test"):
        split = SceneSplit(root, split_name)
        for i in range(len(split)):
            dist = room.distance_to_surfaces(_backproject(split, i))
            assert dist.max() < 1e-3, f"{split_name} frame {i}: {dist.max() * 1e3:.2f} mm off the surfaces"
    # the check can fail: pixel corners instead of centres put points off the oblique surfaces
    split = SceneSplit(root, "train")
    worst = max(room.distance_to_surfaces(_backproject(split, i, half_pixel=0.0)).max() for i in range(len(split)))
    assert worst > 3e-3


def test_depth_consistent_between_frames(scene):
    """Frame A's back-projected points, projected into frame B, meet B's depth where both see the
    same surface (tolerance: the 1 px resampling on oblique surfaces)."""
    root, _ = scene
    train, test = SceneSplit(root, "train"), SceneSplit(root, "test")
    best = None
    for j in range(len(test)):
        pts = _backproject(test, j)
        for i in range(len(train)):
            pose_b, K = train.poses[i], train.intrinsics(i)
            cam = (pts - pose_b[:3, 3]) @ pose_b[:3, :3]
            z = np.maximum(cam[:, 2], 1e-9)
            u, v = K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]
            inside = (cam[:, 2] > 0.1) & (u >= 0) & (u < 160) & (v >= 0) & (v < 120)
            if best is None or inside.sum() > best[0].sum():
                best = (inside, u, v, cam[:, 2], i)
    inside, u, v, z, i = best
    assert inside.sum() > 1000, "test frames should overlap training frames"
    zb = train.load_depth_m(i)[v[inside].astype(int), u[inside].astype(int)]
    rel = np.abs(zb - z[inside]) / z[inside]
    assert np.median(rel) < 0.01


def test_same_seed_same_bytes_and_different_seed_differs(tmp_path):
    kw = dict(n_train=2, n_test=1, resolution=(H, W), backend="torch", texels_per_m=60)
    make_scene(tmp_path / "a", seed=11, **kw)
    make_scene(tmp_path / "b", seed=11, **kw)
    make_scene(tmp_path / "c", seed=12, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 4 * 3 + 1
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for rel in ("train/rgb/frame-000000.color.png", "train/poses/frame-000000.pose.txt", "scene.json"):
        assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes(), rel


def test_gl_and_torch_render_the_same_geometry():
    _gl_or_skip()
    from glace_core.synthetic import build_room
    from glace_core.synthetic import make_renderer
    from glace_core.synthetic.render_torch import TorchRenderer
    from glace_core.synthetic.trajectory import make_trajectory

    room = build_room(2, texels_per_m=80)
    camera = Camera.default(120, 160)
    poses, _ = make_trajectory("random", room, camera, 3, 0, np.random.default_rng(0))
    gl, pt = make_renderer(room, camera, "gl"), TorchRenderer(room, camera)
    try:
        for pose in poses:
            (rgb_gl, z_gl), (rgb_pt, z_pt) = gl.render(pose), pt.render(pose)
            close = np.abs(z_gl - z_pt) < 1e-4
            assert close.mean() > 0.99  # all but silhouette pixels, where coverage rules may differ
            assert np.abs(rgb_gl.astype(int) - rgb_pt).mean() < 4.0
    finally:
        gl.close()


@pytest.mark.parametrize("kind", ["loop", "random"])
def test_trajectories_cover_the_same_space(kind):
    from glace_core.synthetic import build_room
    from glace_core.synthetic.trajectory import make_trajectory

    room = build_room(4, texels_per_m=40)
    train, test = make_trajectory(kind, room, Camera.default(H, W), 40, 8, np.random.default_rng(1))
    for poses in (train, test):
        R = poses[:, :3, :3]
        np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
        xy = poses[:, :2, 3]
        assert np.all(xy >= WALL_CLEARANCE - 1e-9) and np.all(xy <= room.size[:2] - WALL_CLEARANCE + 1e-9)
        for box in room.boxes:
            assert box.footprint_distance(xy).min() > 0.3
    nearest = np.linalg.norm(test[:, None, :3, 3] - train[None, :, :3, 3], axis=-1).min(1)
    assert nearest.max() < (0.3 if kind == "loop" else 2.0)
    if kind == "loop":  # test frames sit between training frames, not on them
        assert nearest.min() > 1e-3


def test_auto_falls_back_to_torch_without_gl(monkeypatch):
    from glace_core.synthetic import build_room, make_renderer, render_gl
    from glace_core.synthetic.render_process import NO_GL_ENV

    monkeypatch.setenv(NO_GL_ENV, "1")  # the child process that would own the context refuses GL
    room = build_room(1, texels_per_m=30)
    assert make_renderer(room, Camera.default(H, W), "auto").backend == "torch"
    with pytest.raises(render_gl.GLUnavailable, match=NO_GL_ENV):
        make_renderer(room, Camera.default(H, W), "gl")


def test_gl_never_loads_into_the_calling_process(tmp_path):
    """Mesa's LLVM and torch's Triton in one process crash: GL must stay in the child."""
    import subprocess
    import sys

    code = ("from glace_core.synthetic import make_scene; import sys; "
            f"info = make_scene({str(tmp_path / 's')!r}, seed=1, n_train=2, n_test=1, resolution=(32, 40)); "
            "import torch; torch.optim.AdamW([torch.zeros(2, requires_grad=True)]); "
            "maps = open('/proc/self/maps').read(); "
            "sys.exit(3 if ('llvmpipe' in maps or 'libEGL_mesa' in maps or 'swrast' in maps) else 0)")
    script = tmp_path / "no_main_guard.py"  # a script without `if __name__ == "__main__"` must not hang
    script.write_text(code.replace("; ", "\n"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_bad_options_raise():
    with pytest.raises(ValueError, match="trajectory"):
        make_scene("/nonexistent", trajectory="spiral")
    with pytest.raises(ValueError, match="backend"):
        make_scene("/nonexistent", backend="vulkan")
    with pytest.raises(ValueError, match="resolution"):
        make_scene("/nonexistent", resolution=(4, 640))


def test_cli_help_and_run(tmp_path, capsys):
    from glace_core.cli import make_scene as cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--n-train", "(default: 200)", "(default: 480x640)", "(default: loop)", "(default: auto)"):
        assert text in out
    with pytest.raises(SystemExit) as exc:
        cli.main([str(tmp_path / "x"), "--resolution", "640"])
    assert exc.value.code == 2
    assert cli.main([str(tmp_path / "s"), "--seed", "1", "--n-train", "2", "--n-test", "1", "--resolution", "48x64",
                     "--backend", "torch", "--texels-per-m", "40"]) == 0
    assert len(SceneSplit(tmp_path / "s", "train")) == 2 and len(SceneSplit(tmp_path / "s", "test")) == 1
