"""Map training pieces: loss, schedules, augmentation, buffer, batch layout, presets and flags."""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import torch

from glace_core.geometry import rotation_z
from glace_core.training import augment, buffer as buffer_mod, loss as loss_mod
from glace_core.training.config import PRESETS, TrainConfig
from glace_core.training.trainer import build_optimizer, decoder_centres, select_frames
from training_fixtures import random_dataset

# --------------------------------------------------------------------------- loss


def test_schedule_endpoints():
    assert loss_mod.schedule_weight(0, 100, "circle") == 0.0
    assert loss_mod.schedule_weight(100, 100, "circle") == 1.0
    assert loss_mod.schedule_weight(50, 100, "circle") == pytest.approx(1 - math.sqrt(0.75))
    assert loss_mod.schedule_weight(30, 100, "linear") == pytest.approx(0.3)
    assert loss_mod.dynamic_soft_clamp(0, 100, 50, 1) == pytest.approx(51.0)
    assert loss_mod.dynamic_soft_clamp(100, 100, 50, 1) == pytest.approx(1.0)
    assert loss_mod.dynamic_soft_clamp(50, 100, 50, 1, "linear") == pytest.approx(26.0)
    with pytest.raises(ValueError, match="circle"):
        loss_mod.schedule_weight(0, 10, "cosine")


@pytest.mark.parametrize("loss_type, expected", [
    ("l1", 0.5 + 2 + 100),
    ("l1+sqrt", 0.5 + 2 + math.sqrt(50 * 100)),
    ("l1+log", 0.5 + 2 + 50 + 50 * math.log(2)),
    ("tanh", sum(50 * math.tanh(e / 50) for e in (0.5, 2, 100))),
])
def test_robust_losses_by_hand(loss_type, expected):
    errors = torch.tensor([0.5, 2.0, 100.0])
    got = loss_mod.robust_reprojection_loss(errors, loss_type, soft_clamp=50)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_dyntanh_clamp_follows_the_schedule():
    errors = torch.tensor([0.5, 2.0, 100.0])
    start = loss_mod.robust_reprojection_loss(errors, "dyntanh", 50, 1, iteration=0, total=10)
    end = loss_mod.robust_reprojection_loss(errors, "dyntanh", 50, 1, iteration=10, total=10)
    assert float(start) == pytest.approx(sum(51 * math.tanh(e / 51) for e in (0.5, 2, 100)), rel=1e-6)
    assert float(end) == pytest.approx(sum(math.tanh(e) for e in (0.5, 2, 100)), rel=1e-6)


def test_reprojection_loss_by_hand():
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    pred = torch.tensor([[0.1, 0.2, 2.0],  # valid: projects to (55, 50)
                         [0.0, 0.0, -1.0],  # behind the camera: invalid (depth < 0.1)
                         [0.0, 0.0, 2000.0],  # beyond depth_max: invalid
                         [100.0, 0.0, 1.0]])  # error > hard clamp: invalid
    target = torch.tensor([[53.0, 51.0], [50.0, 40.0], [60.0, 40.0], [50.0, 40.0]])
    w2c = torch.eye(4)[:3].expand(4, 3, 4)
    total, stats = loss_mod.reprojection_loss(pred, w2c, K.expand(4, 3, 3), torch.linalg.inv(K).expand(4, 3, 3),
                                              target, loss_type="l1")
    invalid = 0.0
    for p, t in zip(pred[1:], target[1:]):
        ray = torch.linalg.inv(K) @ torch.tensor([t[0], t[1], 1.0])
        invalid += float((10 * ray - p).abs().sum())
    assert float(total) == pytest.approx((2 + 1 + invalid) / 4, rel=1e-5)
    assert stats["valid_fraction"] == 0.25 and stats["median_px"] == pytest.approx(3.0)


def test_reprojection_loss_uses_the_pose_and_checks_shapes():
    K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    w2c = torch.eye(4)[:3].clone()
    w2c[:, 3] = torch.tensor([0.0, 0.0, 1.0])  # world point z=1 is at camera depth 2
    pred = torch.tensor([[0.2, 0.0, 1.0]])
    total, _ = loss_mod.reprojection_loss(pred, w2c[None], K[None], torch.linalg.inv(K)[None],
                                          torch.tensor([[60.0, 40.0]]), loss_type="l1")
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"world_to_cam must have shape \(1, 3, 4\)"):
        loss_mod.reprojection_loss(pred, torch.eye(4)[None], K[None], K[None], torch.zeros(1, 2))


# --------------------------------------------------------------------------- optimiser


def test_one_cycle_endpoints_for_the_defaults():
    config = TrainConfig()
    optimizer, scheduler = build_optimizer([torch.nn.Parameter(torch.zeros(1))], config)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(config.max_iterations - 1):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(2e-4)
    assert max(lrs) == pytest.approx(5e-3) and int(np.argmax(lrs)) == pytest.approx(0.3 * 30000, abs=2)
    assert lrs[-1] == pytest.approx(2e-8, rel=1e-3)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


# --------------------------------------------------------------------------- augmentation


def _blob(h, w, centre, sigma=1.5):
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # continuous pixel centres
    return np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def _centroid(image):
    ys, xs = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    weight = np.clip(image - 0.05, 0, None)
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def _project(K, cam_to_world, X):
    p = np.linalg.inv(cam_to_world) @ np.append(X, 1.0)
    return (K @ p[:3])[:2] / p[2]


@pytest.mark.parametrize("angle", [12.0, -9.0])
def test_rotated_image_matches_the_rolled_pose(angle):
    """A 3D point projects, with the updated pose, onto where the rotated image moved its pixel."""
    h, w = 60, 80
    K = np.array([[70.0, 0, 43.0], [0, 65.0, 28.0], [0, 0, 1]])  # off-centre principal point, fx != fy
    pose = np.eye(4)
    pose[:3, :3] = rotation_z(20)[:3, :3] @ np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)],
                                                       [0, np.sin(0.3), np.cos(0.3)]])
    pose[:3, 3] = [0.3, -0.2, 1.0]
    X = pose[:3, :3] @ np.array([0.8, -0.5, 2.5]) + pose[:3, 3]
    u = _project(K, pose, X)
    rotated = augment.rotate_image(_blob(h, w, u), K, angle)
    new_pose = pose.copy()
    new_pose[:3, :3] = pose[:3, :3] @ rotation_z(angle)[:3, :3]
    u_new = _project(K, new_pose, X)
    assert np.linalg.norm(u_new - u) > 3  # the rotation really moved it
    np.testing.assert_allclose(_centroid(rotated), u_new, atol=0.1)
    mask = augment.rotate_image(np.ones((h, w), np.uint8), K, angle, nearest=True, border_value=0)
    assert mask[int(u_new[1]), int(u_new[0])] == 1 and mask.min() == 0  # corners come from outside


def test_augment_image_pose_update_and_jitter():
    h, w = 48, 64
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    pose = np.eye(4)
    X = np.array([0.3, 0.2, 2.0])
    gray = (40 + 180 * _blob(h, w, _project(K, pose, X), sigma=2.0)).astype(np.uint8)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    out = augment.augment_image(rgb, K, pose, h, use_aug=True, aug_scale=1.0, aug_rotation=15,
                                rng=np.random.default_rng(1))
    assert out.image.shape == (1, 1, h, w) and out.mask.shape == (h, w)
    np.testing.assert_allclose(out.K, K, atol=1e-9)
    relative = pose[:3, :3].T @ out.cam_to_world[:3, :3]  # a roll about the optical axis
    angle = np.degrees(np.arctan2(relative[1, 0], relative[0, 0]))
    assert relative[2, 2] == pytest.approx(1.0) and 0.1 < abs(angle) <= 15
    from glace_core.preprocess import MEAN, STD

    image = out.image[0, 0].numpy() * STD + MEAN
    np.testing.assert_allclose(_centroid(image - np.median(image)), _project(K, out.cam_to_world, X), atol=0.3)
    plain = augment.augment_image(rgb, K, pose, h, use_aug=False, aug_scale=1.5, aug_rotation=15,
                                  rng=np.random.default_rng(1))
    np.testing.assert_array_equal(plain.cam_to_world, pose)
    assert plain.mask.all()


def test_augment_scale_range():
    rgb = np.zeros((60, 80, 3), np.uint8)
    K = np.array([[50.0, 0, 40], [0, 50.0, 30], [0, 0, 1]])
    rng = np.random.default_rng(0)
    heights = {augment.augment_image(rgb, K, np.eye(4), 40, use_aug=True, aug_scale=1.5, aug_rotation=0,
                                     rng=rng).image.shape[2] for _ in range(40)}
    assert min(heights) >= int(40 / 1.5) and max(heights) <= 60 and len(heights) > 5


def _plane_view(K, cam_to_world, h, w, plane_z=3.0):
    """Analytic image (the texture of the world plane z = plane_z) and z-depth seen by a camera."""
    v, u = np.mgrid[0:h, 0:w] + 0.5
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T @ cam_to_world[:3, :3].T
    lam = (plane_z - cam_to_world[2, 3]) / rays[..., 2]
    X = cam_to_world[:3, 3] + lam[..., None] * rays
    texture = np.sin(3.0 * X[..., 0]) * np.cos(2.0 * X[..., 1]) + 0.5 * np.sin(5.0 * X[..., 0] + 4.0 * X[..., 1])
    depth = (X - cam_to_world[:3, 3]) @ cam_to_world[:3, 2]  # z in the camera
    return texture.astype(np.float32), depth.astype(np.float32)


def test_novel_view_matches_a_rendering_from_the_new_pose():
    """On a textured plane, the novel view's image and depth equal the plane seen from its new pose."""
    h, w = 96, 128
    K = np.array([[110.0, 0, 62.0], [0, 105.0, 49.0], [0, 0, 1]])
    pose = np.eye(4)
    image, depth = _plane_view(K, pose, h, w)
    aug = augment.AugmentedImage(torch.from_numpy(image)[None, None], K, pose, np.ones((h, w), bool), depth)
    rng = np.random.default_rng(3)
    out = augment.novel_view(aug, rng, max_offset_m=0.4, max_yaw_deg=12.0)
    assert out is not None and out.image.shape == (1, 1, h, w)
    moved = np.linalg.norm(out.cam_to_world[:3, 3] - pose[:3, 3])
    turned = np.degrees(np.arccos(np.clip((np.trace(out.cam_to_world[:3, :3]) - 1) / 2, -1, 1)))
    assert 0.01 < moved <= 0.4 and 0.1 < turned <= 12.0
    np.testing.assert_allclose(out.cam_to_world[:3, :3] @ out.cam_to_world[:3, :3].T, np.eye(3), atol=1e-12)
    truth, truth_depth = _plane_view(K, out.cam_to_world, h, w)
    keep = out.mask
    assert 0.3 < keep.mean() < 1.0  # trainable, minus what the source did not see and the margin
    assert np.abs(out.image[0, 0].numpy()[keep] - truth[keep]).mean() < 0.02  # bilinear lookup error only
    np.testing.assert_allclose(out.depth[keep], truth_depth[keep], rtol=0.02)
    assert (out.depth[~keep] == 0).all()


def test_novel_view_masks_what_the_source_does_not_see():
    """A box in front of the plane hides part of it: once the camera moves, the uncovered plane has no
    source pixel and must not be trained on, and without depth there is no novel view."""
    h, w = 96, 128
    K = np.array([[110.0, 0, 64.0], [0, 110.0, 48.0], [0, 0, 1]])
    image, depth = _plane_view(K, np.eye(4), h, w)
    depth[30:66, 50:78] = 1.0  # a box 1 m away covers the middle of the image
    image[30:66, 50:78] = 2.0
    aug = augment.AugmentedImage(torch.from_numpy(image)[None, None], K, np.eye(4), np.ones((h, w), bool), depth)
    rng = np.random.default_rng(0)
    out = None
    while out is None:
        out = augment.novel_view(aug, rng, max_offset_m=0.3, max_yaw_deg=0.0)
    truth, _ = _plane_view(K, out.cam_to_world, h, w)
    plane = out.mask & (out.depth > 2.0)
    assert plane.sum() > 1000
    assert np.abs(out.image[0, 0].numpy()[plane] - truth[plane]).mean() < 0.02  # no box pixels on the plane
    with pytest.raises(ValueError, match="depth"):
        augment.novel_view(augment.AugmentedImage(aug.image, K, np.eye(4), aug.mask), rng, 0.3, 10.0)
    far = [augment.novel_view(aug, rng, max_offset_m=50.0, max_yaw_deg=0.0) for _ in range(10)]
    assert sum(view is None for view in far) >= 7  # metres away, the frame hardly overlaps: no view


# --------------------------------------------------------------------------- buffer


def test_cell_targets_and_mask():
    targets = buffer_mod.cell_targets((2, 3), 8)
    np.testing.assert_array_equal(targets, [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]])
    mask = np.zeros((13, 20), bool)
    mask[12, 4] = True  # last row of a 13-px image: cell (0, 1) samples row min(12, 12)
    np.testing.assert_array_equal(buffer_mod.cell_mask(mask, (2, 3), 8), [[False, False, False], [True, False, False]])


def test_buffer_rows_match_the_encoder():
    from glace_core.encoder_registry import resolve_encoder
    from glace_core.preprocess import preprocess_image

    torch.set_num_threads(1)
    data = random_dataset(n=3, h=32, w=48)
    encoder = resolve_encoder("ace-random:0")
    buf = buffer_mod.build_training_buffer(
        data, [0, 2], encoder, buffer_size=100, samples_per_image=30, image_resolution=32, use_aug=False,
        aug_scale=1.5, aug_rotation=15, device=torch.device("cpu"), rng=np.random.default_rng(0),
        generator=torch.Generator().manual_seed(0), progress=False)
    assert len(buf) == 100 and buf.features.dtype == torch.float16
    assert set(buf.img_idx.tolist()) == {0, 2}
    counts = np.bincount(buf.img_idx.numpy(), minlength=3)
    assert sorted(counts.tolist()) == [0, 40, 60]  # 30 per image and pass, the last chunk cut at 100
    with torch.inference_mode():
        feats = {i: encoder(preprocess_image(data.load_rgb(i), data.K, resolution=32)[0])[0] for i in (0, 2)}
    for row in range(0, 100, 7):
        i = int(buf.img_idx[row])
        x, y = ((buf.target_px[row].numpy() - 4) / 8).astype(int)
        assert np.allclose(buf.target_px[row].numpy(), [8 * x + 4, 8 * y + 4])
        torch.testing.assert_close(buf.features[row].float(), feats[i][:, y, x].half().float())
        np.testing.assert_allclose(buf.world_to_cam[row].numpy(), np.linalg.inv(data.poses[i])[:3], atol=1e-6)
        np.testing.assert_allclose(buf.K[row].numpy(), data.K, atol=1e-5)
        np.testing.assert_allclose(buf.K_inv[row].numpy() @ buf.K[row].numpy(), np.eye(3), atol=1e-5)


def test_buffer_rows_from_novel_views_carry_their_own_pose_and_depth(tmp_path, caplog):
    """novel_view_ratio 1: every row comes from a re-rendered view, with that view's pose (near its
    frame's) and depth; ratio 0 leaves the buffer as it was; a split without depth trains without them."""
    from glace_core.encoder_registry import resolve_encoder
    from glace_core.training import train_map

    torch.set_num_threads(1)
    data = random_dataset(n=3, h=64, w=96)
    data.depths = np.full((3, 64, 96), 2.0, np.float32)  # a wall 2 m ahead of every frame
    encoder = resolve_encoder("ace-random:0")

    def build(**novel):
        return buffer_mod.build_training_buffer(
            data, [0, 1, 2], encoder, buffer_size=120, samples_per_image=20, image_resolution=64, use_aug=False,
            aug_scale=1.5, aug_rotation=15, device=torch.device("cpu"), rng=np.random.default_rng(0),
            generator=torch.Generator().manual_seed(0), progress=False, use_depth=True, **novel)

    plain, off = build(), build(novel_view_ratio=0.0)
    torch.testing.assert_close(plain.features, off.features)
    torch.testing.assert_close(plain.world_to_cam, off.world_to_cam)
    novel = build(novel_view_ratio=1.0, novel_view_offset=0.1, novel_view_yaw=5.0)
    for row in range(0, 120, 5):
        i = int(novel.img_idx[row])
        w2c = novel.world_to_cam[row].double().numpy()
        centre = -w2c[:, :3].T @ w2c[:, 3]
        distance = np.linalg.norm(centre - data.poses[i][:3, 3])
        assert 1e-4 < distance <= 0.1 + 1e-5  # a camera of its own, near the frame's
        x, y = ((novel.target_px[row].numpy() - 4) / 8).astype(int)
        point = data.poses[i][:3, :3] @ np.array([0.0, 0.0, 2.0]) + data.poses[i][:3, 3]  # on the wall ...
        normal = data.poses[i][:3, 2]
        ray = np.linalg.inv(w2c[:, :3]) @ np.linalg.inv(novel.K[row].double().numpy()) @ [8 * x + 4, 8 * y + 4, 1.0]
        hit = ((point - centre) @ normal) / (ray @ normal)  # ... seen along the cell's ray: its depth
        assert float(novel.target_depth[row]) == pytest.approx(hit * (w2c[2, :3] @ ray), rel=0.02)
    config = TrainConfig.from_preset("cpu", encoder_path="ace-random:0", image_resolution=32, max_iterations=2,
                                     batch_size=512, training_buffer_size=1024, head_channels=32,
                                     num_clusters=None, device="cpu", novel_view_ratio=0.5)
    with caplog.at_level(logging.INFO, logger="glace_core.training.trainer"):
        result = train_map(config, random_dataset(n=4, h=32, w=48), tmp_path / "m.pt", progress=False)
    assert result.buffer_rows == 1024 and "novel views off" in caplog.text  # RGB only: trained without them


# --------------------------------------------------------------------------- trainer helpers


def test_select_frames_and_centres():
    poses = np.repeat(np.eye(4)[None], 6, axis=0)
    poses[:, 0, 3] = [0, 0.1, 0.2, 10, 10.1, 10.2]
    poses[1, 0, 0] = np.inf
    assert select_frames(poses) == [0, 2, 3, 4, 5]
    near, far = select_frames(poses, 2, 0), select_frames(poses, 2, 1)
    assert sorted(near + far) == [0, 2, 3, 4, 5] and {len(near), len(far)} == {2, 3}
    np.testing.assert_allclose(decoder_centres(poses[[0, 2], :3, 3], 1), [[0.1, 0, 0]], atol=1e-6)
    centres = decoder_centres(poses[[0, 2, 3, 4, 5], :3, 3], 2)
    np.testing.assert_allclose(np.sort(centres[:, 0]), [0.1, 10.1], atol=1e-5)
    with pytest.raises(ValueError, match="exceeds"):
        decoder_centres(poses[:2, :3, 3], 3)


# --------------------------------------------------------------------------- presets and flags

#: The reference train_ace.py options and defaults (GLACE_SPEC.md, "CLI options").
REFERENCE_OPTIONS = {
    "global_feat": True, "feat_name": "features.npy", "feat_noise_std": 0.1, "num_decoder_clusters": 1,
    "head_channels": 768, "mlp_ratio": 1.0, "encoder_path": "./ace_encoder_pretrained.pt", "num_head_blocks": 1,
    "learning_rate_min": 0.0005, "learning_rate_max": 0.005, "training_buffer_size": 16000000,
    "samples_per_image": 1024, "batch_size": 40960, "max_iterations": 30000, "repro_loss_hard_clamp": 1000,
    "repro_loss_soft_clamp": 50, "repro_loss_soft_clamp_min": 1, "repro_loss_type": "dyntanh",
    "repro_loss_schedule": "circle", "use_half": True, "use_homogeneous": True, "use_aug": True,
    "aug_rotation": 15, "aug_scale": 1.5, "image_resolution": 480, "depth_min": 0.1, "depth_target": 10,
    "depth_max": 1000, "num_clusters": None, "cluster_idx": None, "render_visualization": False,
    "render_target_path": "renderings", "render_flipped_portrait": False, "render_map_error_threshold": 10,
    "render_map_depth_filter": 10, "render_camera_z_offset": 4,
}


def test_flags_map_one_to_one_onto_fields():
    from glace_core.cli.train import build_parser

    parser = build_parser()
    options = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "no_progress")}
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert set(options) == set(fields)
    for name, default in fields.items():
        assert options[name].option_strings == [f"--{name}"] and options[name].default == default, name
    for name, default in REFERENCE_OPTIONS.items():
        assert fields[name] == default, name
    assert (fields["device"], fields["seed"], fields["preset"]) == ("auto", 42, "paper")


def test_presets_and_explicit_flags():
    from glace_core.cli.train import config_from_args

    _, paper = config_from_args(["scene", "map.pt"])
    assert paper == TrainConfig()
    _, cpu = config_from_args(["scene", "map.pt", "--preset", "cpu"])
    for key, value in PRESETS["cpu"].items():
        assert getattr(cpu, key) == value
    assert cpu.preset == "cpu" and cpu.learning_rate_max == 0.005
    _, mixed = config_from_args(["scene", "map.pt", "--preset", "cpu", "--head_channels", "768",
                                 "--global_feat", "True", "--use_aug", "false", "--num_clusters", "3",
                                 "--cluster_idx", "1"])
    assert (mixed.head_channels, mixed.global_feat, mixed.use_aug) == (768, True, False)
    assert (mixed.num_clusters, mixed.cluster_idx, mixed.batch_size) == (3, 1, PRESETS["cpu"]["batch_size"])
    with pytest.raises(ValueError, match=r"valid presets: \['cpu', 'fast', 'paper', 'quality'\]"):
        TrainConfig.from_preset("gpu")


@pytest.mark.parametrize("argv, message", [
    (["--use_aug", "maybe"], "expected True or False"),
    (["--repro_loss_type", "l2"], "invalid choice"),
    (["--batch_size", "0"], "batch_size must be > 0"),
    (["--cluster_idx", "1"], "needs num_clusters"),
    (["--num_clusters", "0"], "num_clusters must be >= 1"),
    (["--num_clusters", "3", "--cluster_overlap", "0.5"], "cluster_overlap must be >= 1"),
    (["--render_visualization", "True"], "not supported"),
    (["--training_buffer_size", "100"], "at least batch_size"),
])
def test_bad_flags_are_refused(argv, message, capsys):
    from glace_core.cli.train import config_from_args

    with pytest.raises(SystemExit) as exc:
        config_from_args(["scene", "map.pt"] + argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


# --------------------------------------------------------------------------- train_map on frames in memory


def test_train_map_accepts_frames_in_memory(tmp_path):
    """What a bag reader hands over: no DSAC* folder, global features included."""
    from glace_core.map_files import read_map_metadata
    from glace_core.network import load_head
    from glace_core.training import train_map

    torch.set_num_threads(1)
    data = random_dataset(n=4, h=32, w=48, features=True)
    config = TrainConfig.from_preset("cpu", encoder_path="xfeat", global_feat=True, image_resolution=32,
                                     use_aug=True, max_iterations=3, batch_size=512, training_buffer_size=1024,
                                     head_channels=32, num_decoder_clusters=2, device="cpu")
    result = train_map(config, data, tmp_path / "m.pt", progress=False, metadata={"source": "memory"})
    assert result.output_path == tmp_path / "m.pt" and result.buffer_rows == 1024 and result.world_size == 1
    head = load_head(tmp_path / "m.pt")
    assert (head.global_channels, head.local_channels, head.num_decoder_clusters) == (256, 64, 2)
    meta = read_map_metadata(tmp_path / "m.pt")
    assert meta["source"] == "memory" and meta["training"]["config"]["global_feat"] is True
    assert meta["encoder"]["name"] == "xfeat" and meta["encoder"]["pad_multiple"] == 32
    # the frames' focal length at network resolution (focal matching reads it): 32x48 frames at 32, unscaled
    assert meta["training"]["network_focal_px"] == pytest.approx(float(data.K[0, 0]), abs=1e-3)
    no_features = random_dataset(n=4, h=32, w=48)
    with pytest.raises(ValueError, match="glace-extract-features"):
        train_map(config, no_features, tmp_path / "n.pt", progress=False)
    assert not (tmp_path / "n.pt").exists()
