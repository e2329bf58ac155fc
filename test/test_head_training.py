"""Training the heads of an ensemble together (glace_core.training.stacked_heads, trainer.train_heads)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glace_core.head import GlaceHead
from glace_core.training.loss import reprojection_loss, reprojection_terms
from glace_core.training.stacked_heads import StackedHeads
from training_fixtures import MemoryDataset


def _heads(k: int, **arch) -> list[GlaceHead]:
    torch.manual_seed(0)
    heads = [GlaceHead(**arch) for _ in range(k)]
    for i, head in enumerate(heads):
        nc = head.num_decoder_clusters
        head.set_centers(np.arange(3 * nc, dtype=np.float32).reshape(nc, 3) * 0.1 + i)
    return heads


@pytest.mark.parametrize("arch", [
    dict(local_channels=16, global_channels=8, head_channels=32),
    dict(local_channels=16, global_channels=0, head_channels=16, mlp_ratio=2.0, num_head_blocks=2,
         num_decoder_clusters=3),  # head_skip is the identity (in == h), position decoder
    dict(local_channels=16, global_channels=0, head_channels=24, num_head_blocks=0, use_homogeneous=False),
])
def test_stacked_heads_compute_each_head_and_write_back(arch):
    heads = _heads(3, **arch)
    stacked = StackedHeads(heads)
    b, c, g = 50, arch["local_channels"], arch["global_channels"]
    x, gx = torch.randn(3, b, c), torch.randn(3, b, g)
    out = stacked(x, gx if g else None)
    assert out.shape == (3, b, 3) and out.dtype == torch.float32
    for k, head in enumerate(heads):
        reference = head(x[k, :, :, None, None], gx[k] if g else None)[:, :, 0, 0]
        torch.testing.assert_close(out[k], reference, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for w in stacked.weight.values():
            w.mul_(0.5)
    stacked.write_back()
    halved = stacked(x, gx if g else None)
    for k, head in enumerate(heads):
        torch.testing.assert_close(halved[k], head(x[k, :, :, None, None], gx[k] if g else None)[:, :, 0, 0],
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="local features"):
        stacked(x[:2], gx[:2] if g else None)
    with pytest.raises(ValueError, match="one architecture"):
        StackedHeads([heads[0], GlaceHead(local_channels=16, global_channels=0, head_channels=8)])


def test_one_optimiser_over_stacked_heads_is_one_per_head():
    """Summed per-head losses give each head its own gradient, and a fused AdamW step over the stack
    equals an AdamW step per head."""
    arch = dict(local_channels=8, global_channels=0, head_channels=16)
    heads = _heads(3, **arch)
    stacked = StackedHeads(heads)
    b = 64
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, b, 8, generator=gen)
    w2c = torch.eye(4)[:3].expand(3 * b, 3, 4).clone()
    w2c[:, 2, 3] = 2.0
    K = torch.tensor([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]).expand(3 * b, 3, 3)
    target = torch.rand(3 * b, 2, generator=gen) * 60
    terms, _, _ = reprojection_terms(stacked(x).reshape(-1, 3), w2c, K, torch.linalg.inv(K), target, loss_type="l1")
    (terms.view(3, b).sum(1) / b).sum().backward()
    for k, head in enumerate(heads):
        rows = slice(k * b, (k + 1) * b)
        pred = head(x[k, :, :, None, None])[:, :, 0, 0]
        loss, _ = reprojection_loss(pred, w2c[rows], K[rows], torch.linalg.inv(K[rows]), target[rows], loss_type="l1")
        loss.backward()
        for n in stacked.layers:
            conv = getattr(head, n)
            torch.testing.assert_close(stacked.weight[n].grad[k], conv.weight.grad[:, :, 0, 0], rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(stacked.bias[n].grad[k], conv.bias.grad, rtol=1e-4, atol=1e-7)
            stacked.weight[n].grad[k] = conv.weight.grad[:, :, 0, 0]  # the same gradients for the step below
            stacked.bias[n].grad[k] = conv.bias.grad
    stacked_opt = torch.optim.AdamW(stacked.parameters(), lr=0.01, weight_decay=0.01, fused=True)
    for _ in range(2):
        stacked_opt.step()
    stacked.write_back()
    for k, original in enumerate(_heads(3, **arch)):  # the same initial weights, stepped one head at a time
        for name, p in original.named_parameters():
            p.grad = heads[k].get_parameter(name).grad.clone()
        opt = torch.optim.AdamW(original.parameters(), lr=0.01, weight_decay=0.01)
        for _ in range(2):
            opt.step()
        for name, p in original.named_parameters():
            torch.testing.assert_close(heads[k].get_parameter(name), p, rtol=1e-6, atol=1e-7)


def _two_rooms(n: int = 12, h: int = 32, w: int = 48) -> MemoryDataset:
    """Two groups of n cameras 1.5 m apart looking in opposite directions (yaw 0 / 180 deg)."""
    rng = np.random.default_rng(5)
    poses = np.repeat(np.eye(4)[None], 2 * n, axis=0)
    for i in range(2 * n):
        yaw = np.pi * (i >= n) + rng.normal(0, 0.05)
        poses[i, :3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
        poses[i, :3, 3] = [1.5 * (i >= n) + rng.normal(0, 0.1), rng.normal(0, 0.1), 0]
    images = rng.integers(0, 256, size=(2 * n, h, w, 3), dtype=np.uint8)
    return MemoryDataset(images, poses, np.array([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]]))


def _fit_two_rooms(tmp_path, **overrides):
    from glace_core.training import train_map
    from glace_core.training.config import TrainConfig

    torch.set_num_threads(1)
    options = dict(encoder_path="xfeat", image_resolution=32, max_iterations=150, batch_size=256,
                   training_buffer_size=2048, samples_per_image=24, head_channels=32, num_clusters=2,
                   cluster_overlap=1.0, device="cpu")
    config = TrainConfig.from_preset("cpu", **{**options, **overrides})
    data = _two_rooms()
    return data, config, train_map(config, data, tmp_path / "m.pt", progress=False)


def test_heads_trained_together_fit_their_own_cluster(tmp_path):
    from glace_core.encoder_registry import resolve_encoder
    from glace_core.head_ensemble import HeadEnsemble
    from glace_core.map_files import read_map_metadata
    from glace_core.network import load_map
    from glace_core.training.buffer import build_training_buffer

    data, config, result = _fit_two_rooms(tmp_path)
    assert result.heads == 2 and len(result.head_fits) == 2
    for fit in result.head_fits:
        assert fit.loss < 0.5 * fit.first_loss and fit.median_px < 5.0
    ensemble = load_map(tmp_path / "m.pt")
    assert isinstance(ensemble, HeadEnsemble) and len(ensemble) == 2
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    for k, head in enumerate(ensemble.heads):
        assert isinstance(head, GlaceHead) and (head.head_channels, head.local_channels) == (32, 64)
        layout = list(GlaceHead(local_channels=64, global_channels=0, head_channels=32).state_dict())
        assert [key.split(".", 1)[1] for key in raw if key.startswith(f"{k}.")] == layout
    assert all(v.dtype == torch.float16 for v in raw.values())
    meta = read_map_metadata(tmp_path / "m.pt")
    assert meta["training"]["precision"] == "fp32" and len(meta["ensemble"]["final_median_px_per_head"]) == 2

    # each head predicts its own cluster's frames better than the other head does
    membership = ensemble.membership.bool()
    encoder = resolve_encoder("xfeat")
    buf = build_training_buffer(data, list(range(len(data))), encoder, buffer_size=24 * len(data),
                                samples_per_image=24, image_resolution=32, use_aug=False, aug_scale=1.5,
                                aug_rotation=15, device=torch.device("cpu"), rng=np.random.default_rng(9),
                                generator=torch.Generator().manual_seed(9), progress=False)
    errors = np.zeros((2, 2))
    for j in range(2):
        rows = buf.subset(torch.nonzero(membership[j][buf.img_idx]).flatten())
        for k, head in enumerate(ensemble.heads):
            with torch.no_grad():
                pred = head.float()(rows.features.float()[:, :, None, None])[:, :, 0, 0]
            _, stats = reprojection_loss(pred, rows.world_to_cam, rows.K, rows.K_inv, rows.target_px)
            errors[j, k] = stats["median_px"] if stats["valid_fraction"] > 0.5 else np.inf
    assert errors[0, 0] < 5 and errors[1, 1] < 5
    assert errors[0, 1] > 5 * errors[0, 0] and errors[1, 0] > 5 * errors[1, 1]


def test_batched_training_is_deterministic(tmp_path):
    _, _, first = _fit_two_rooms(tmp_path / "a", max_iterations=20)
    _, _, second = _fit_two_rooms(tmp_path / "b", max_iterations=20)
    a, b = (torch.load(p / "m.pt", weights_only=True) for p in (tmp_path / "a", tmp_path / "b"))
    assert list(a) == list(b) and all(torch.equal(a[key], b[key]) for key in a)
    assert [f.loss for f in first.head_fits] == [f.loss for f in second.head_fits]


def test_forced_bf16_still_trains(tmp_path, monkeypatch):
    """GLACE_CPU_FEATURES=avx512_bf16 simulates a CPU with bf16: heads train under bf16 autocast
    (emulated here, so only that it trains is checked, not its speed)."""
    from glace_core.map_files import read_map_metadata

    monkeypatch.setenv("GLACE_CPU_FEATURES", "avx512_bf16")
    _fit_two_rooms(tmp_path / "default", max_iterations=5)  # the default trains fp32 even on a bf16 CPU
    assert read_map_metadata(tmp_path / "default" / "m.pt")["training"]["precision"] == "fp32"
    _, _, result = _fit_two_rooms(tmp_path, max_iterations=60, precision="auto")
    assert read_map_metadata(tmp_path / "m.pt")["training"]["precision"] == "bf16"
    for fit in result.head_fits:
        assert fit.loss < 0.7 * fit.first_loss
    monkeypatch.setenv("GLACE_CPU_FEATURES", "")
    _, _, plain = _fit_two_rooms(tmp_path / "fp32", max_iterations=5, precision="bf16")
    assert read_map_metadata(tmp_path / "fp32" / "m.pt")["training"]["precision"] == "fp32"


def test_heads_beyond_the_row_budget_train_in_groups(tmp_path, monkeypatch):
    from glace_core.network import load_map
    from glace_core.training import trainer

    monkeypatch.setattr(trainer, "STACKED_ROWS", 256)  # one head per stacked module at batch 256
    _, _, result = _fit_two_rooms(tmp_path, max_iterations=60)
    assert len(result.head_fits) == 2 and all(f.loss < 0.7 * f.first_loss for f in result.head_fits)
    assert len(load_map(tmp_path / "m.pt")) == 2
