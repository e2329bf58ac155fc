"""Depth supervision in map training (``--use_depth``): the loss term, the depth's registration
through augmentation, the buffer's depth rows, the refusals, and a trained map whose scene
coordinates follow the mapping depth more closely than one trained from RGB and poses alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glace_core.training import augment, buffer as buffer_mod, loss as loss_mod
from glace_core.training.config import TrainConfig
from training_fixtures import MemoryDataset, random_dataset, small_scene

K = torch.tensor([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])


def test_depth_term_by_hand():
    """A cell with depth adds weight x |p_cam - d ray|_1 and, when invalid, is pulled to its depth
    point instead of depth_target; a cell without depth (0) keeps the plain reprojection loss."""
    pred = torch.tensor([[0.1, 0.2, 2.0],  # projects to (55, 50): no pixel error, depth 2 against 2.5
                         [0.0, 0.0, -1.0],  # behind the camera: invalid
                         [0.1, 0.2, 2.0]])  # same as the first, depth unknown
    target_px = torch.tensor([[55.0, 50.0], [50.0, 40.0], [55.0, 50.0]])
    w2c = torch.eye(4)[:3].expand(3, 3, 4)
    args = (pred, w2c, K.expand(3, 3, 3), torch.linalg.inv(K).expand(3, 3, 3), target_px)
    depth = torch.tensor([2.5, 3.0, 0.0])
    terms, _, valid = loss_mod.reprojection_terms(*args, loss_type="l1", target_depth=depth, depth_weight=100.0)
    plain, _, _ = loss_mod.reprojection_terms(*args, loss_type="l1")
    ray0 = torch.tensor([0.05, 0.1, 1.0])
    assert valid.tolist() == [True, False, True]
    assert float(terms[0]) == pytest.approx(100.0 * float((2.5 * ray0 - pred[0]).abs().sum()), rel=1e-5)
    assert float(terms[1]) == pytest.approx(100.0 * float((torch.tensor([0.0, 0.0, 3.0]) - pred[1]).abs().sum()))
    assert float(terms[2]) == pytest.approx(float(plain[2])) and float(plain[0]) == pytest.approx(0.0, abs=1e-4)
    same, _, _ = loss_mod.reprojection_terms(*args, loss_type="l1", target_depth=depth, depth_weight=0.0)
    torch.testing.assert_close(same, plain)
    with pytest.raises(ValueError, match=r"target_depth must have shape \(3,\)"):
        loss_mod.reprojection_terms(*args, target_depth=torch.zeros(2), depth_weight=1.0)


def _backproject(K, cam_to_world, u, v, z):
    cam = z * (np.linalg.inv(K) @ np.array([u, v, 1.0]))
    return cam_to_world[:3, :3] @ cam + cam_to_world[:3, 3]


def test_augmented_depth_stays_registered_to_the_image():
    """Scaled and rolled: a pixel's depth in the augmented image back-projects (augmented K and
    pose) to a 3D point that lies at the original depth of the pixel it projects to originally."""
    h, w = 60, 80
    Kn = np.array([[70.0, 0, 40.0], [0, 70.0, 30.0], [0, 0, 1]])
    uu, vv = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    depth = (2.0 + 0.01 * uu + 0.005 * vv).astype(np.float32)  # a smooth slanted surface
    pose = np.eye(4)
    pose[:3, 3] = [0.2, -0.1, 0.5]
    rng = np.random.default_rng(4)
    checked = 0
    for _ in range(4):
        out = augment.augment_image(np.zeros((h, w, 3), np.uint8), Kn, pose, 48, use_aug=True, aug_scale=1.3,
                                    aug_rotation=15, rng=rng, depth=depth)
        assert out.depth.shape == out.mask.shape == tuple(out.image.shape[-2:])
        assert (out.depth[~out.mask] == 0).all()  # border brought in by the roll: unknown
        for v, u in zip(*np.nonzero(out.depth > 0)):
            if (u + v) % 17:
                continue
            X = _backproject(out.K, out.cam_to_world, u + 0.5, v + 0.5, out.depth[v, u])
            p = np.linalg.inv(pose) @ np.append(X, 1.0)
            u0, v0 = (Kn @ p[:3])[:2] / p[2]
            if 0 <= u0 < w and 0 <= v0 < h:
                assert p[2] == pytest.approx(depth[int(v0), int(u0)], abs=0.04)  # nearest neighbour: ~2 px
                checked += 1
    assert checked > 40
    with pytest.raises(ValueError, match="aspect ratio"):
        augment.augment_image(np.zeros((h, w, 3), np.uint8), Kn, pose, 48, use_aug=False, aug_scale=1.0,
                              aug_rotation=0, rng=rng, depth=np.ones((60, 60), np.float32))


def test_buffer_holds_the_depth_at_each_cell_centre():
    data = random_dataset(n=2, h=32, w=48)
    depths = np.random.default_rng(1).uniform(1.0, 4.0, size=(2, 32, 48)).astype(np.float32)
    depths[1, :8] = 0.0  # unknown in the first row of cells of frame 1
    data = MemoryDataset(data.images, data.poses, data.K, depths=depths)
    from glace_core.encoder_registry import resolve_encoder

    kwargs = dict(buffer_size=60, samples_per_image=30, image_resolution=32, use_aug=False, aug_scale=1.5,
                  aug_rotation=15, device=torch.device("cpu"), progress=False)
    encoder = resolve_encoder("ace-random:0")
    buf = buffer_mod.build_training_buffer(data, [0, 1], encoder, rng=np.random.default_rng(0),
                                           generator=torch.Generator().manual_seed(0), use_depth=True, **kwargs)
    for row in range(len(buf)):
        i = int(buf.img_idx[row])
        u, v = buf.target_px[row].numpy().astype(int)  # the pixel holding the cell centre
        assert float(buf.target_depth[row]) == pytest.approx(float(depths[i, v, u]))
    assert (buf.target_depth == 0).any() and (buf.target_depth > 0).any()
    off = buffer_mod.build_training_buffer(data, [0, 1], encoder, rng=np.random.default_rng(0),
                                           generator=torch.Generator().manual_seed(0), **kwargs)
    assert (off.target_depth == 0).all()


def test_use_depth_on_needs_a_depth_folder(tmp_path):
    from glace_core.training import train_map

    with pytest.raises(ValueError, match=r"--use_depth on, but the mapping split has no depth/ folder"):
        train_map(TrainConfig.from_preset("cpu", encoder_path="ace-random:0", use_depth="on"),
                  random_dataset(n=3), tmp_path / "map.pt", progress=False)
    with pytest.raises(ValueError, match="use_depth must be one of"):
        TrainConfig.from_preset("cpu", use_depth="yes")


def test_the_cpu_presets_use_depth_where_the_split_has_it_and_the_paper_never():
    from glace_core.training.trainer import depth_supervision

    without = random_dataset(n=2)
    with_depth = MemoryDataset(without.images, without.poses, without.K,
                               depths=np.ones(without.images.shape[:3], np.float32))
    for preset in ("cpu", "quality", "fast"):
        config = TrainConfig.from_preset(preset)
        assert config.use_depth == "auto"
        assert depth_supervision(config, with_depth) and not depth_supervision(config, without)
    paper = TrainConfig.from_preset("paper")
    assert paper.use_depth == "off" and not depth_supervision(paper, with_depth)


@pytest.fixture(scope="module")
def box_scene(tmp_path_factory):
    torch.set_num_threads(2)
    return small_scene(tmp_path_factory.mktemp("depth") / "scene", seed=5, n_train=12, n_test=2)


def _coordinate_errors(scene, map_path) -> np.ndarray:
    """3D error (m) of the map's scene coordinates against the mapping depth, over the training cells."""
    from glace_core.dataset import SceneSplit
    from glace_core.localizer import Localizer

    split = SceneSplit(scene, "train")
    localizer = Localizer.load(map_path, device="cpu")
    errors = []
    for i in range(len(split)):
        sc = localizer.localize(split.load_rgb(i), split[i].K).scene_coordinates  # (3, h, w), no resize at 96
        depth = split.load_depth_m(i)
        for y in range(sc.shape[1]):
            for x in range(sc.shape[2]):
                z = depth[8 * y + 4, 8 * x + 4]
                if z > 0:
                    X = _backproject(split[i].K, split[i].pose, 8 * x + 4, 8 * y + 4, z)
                    errors.append(np.linalg.norm(sc[:, y, x] - X))
    return np.array(errors)


def test_a_depth_supervised_map_follows_the_mapping_depth(box_scene, tmp_path):
    """Same seed and budget, with and without --use_depth: the supervised map's points lie much
    closer to the depth points, and its sidecar records the supervision."""
    from glace_core.cli.train import main as train_main

    medians = {}
    for mode in ("off", "auto"):
        out = tmp_path / f"map_{mode}.pt"
        code = train_main([str(box_scene), str(out), "--preset", "cpu", "--encoder_path", "xfeat",
                           "--image_resolution", "96", "--num_clusters", "1", "--max_iterations", "150",
                           "--batch_size", "1024", "--training_buffer_size", "24576", "--use_depth", mode,
                           "--no-progress"])
        assert code == 0
        sidecar = json.loads(out.with_name(out.name + ".json").read_text())
        assert sidecar["training"]["depth_supervision"] is (mode == "auto")
        medians[mode] = float(np.median(_coordinate_errors(box_scene, out)))
    assert medians["auto"] < 0.5 * medians["off"], medians
