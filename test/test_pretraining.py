"""Encoder pretraining: data, loss, the training loop, checkpoints/resume, the ACE-layout output, the CLI."""
from __future__ import annotations

import json
import math
import os
import socket
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretraining_fixtures import write_box_scene  # noqa: E402

from glace_core.cli.pretrain_encoder import main as cli_main  # noqa: E402
from glace_core.encoder import ACE_ENCODER_LAYOUT, ACEEncoder  # noqa: E402
from glace_core.network import load_encoder  # noqa: E402
from glace_core.pretraining import PretrainConfig, ace_encoder_state_dict, pretrain_encoder  # noqa: E402
from glace_core.pretraining import trainer as trainer_module  # noqa: E402
from glace_core.pretraining.data import load_scene, sample_batch  # noqa: E402
from glace_core.pretraining.loss import dyntanh_clamp, pretrain_loss  # noqa: E402

TINY = dict(iterations=4, batch_images=2, image_height=32, head_channels=32, checkpoint_every=2, log_every=1,
            aug_scale=1.2)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pretrain_scenes")
    return [write_box_scene(root / f"s{i}", seed=i, n_train=6, n_test=1, height=48, width=64) for i in range(2)]


def test_load_scene_scales_intrinsics_and_keeps_depth(scenes):
    scene = load_scene(scenes[0], image_height=24)
    assert scene.images.shape == (6, 24, 32) and scene.images.dtype == torch.uint8
    focal = 0.8 * 64 * 0.5
    assert torch.allclose(scene.K[0], torch.tensor([[focal, 0, 16], [0, focal, 12], [0, 0, 1]]))
    assert scene.depth is not None and scene.depth.shape == (6, 24, 32)
    assert float(scene.depth.min()) > 0.1 and float(scene.depth.max()) < 8
    assert load_scene(scenes[0], 24, max_frames=3).images.shape[0] == 3


def test_load_scene_rejects_mismatched_files(scenes, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(scenes[0] / "train", broken)
    next((broken / "poses").iterdir()).unlink()
    with pytest.raises(ValueError, match="file counts differ"):
        load_scene(broken, 24)
    with pytest.raises(FileNotFoundError, match="has no rgb"):
        load_scene(tmp_path, 24)


def test_batch_pixels_are_the_stride8_cell_centres(scenes):
    scene = load_scene(scenes[0], image_height=20)  # 20 x 27 px: a 3 x 4 cell grid
    batch = sample_batch(scene, 2, torch.Generator().manual_seed(0))
    px = batch["pixels"]
    assert px.shape == (2, 2, 3, 4) and px.dtype == torch.float32
    assert px[0, 0, 0].tolist() == [4, 12, 20, 28] and px[1, 1, :, 0].tolist() == [4, 12, 20]


def test_ground_truth_points_give_zero_loss_and_wrong_points_do_not(scenes):
    scene = load_scene(scenes[0], image_height=48)
    batch = sample_batch(scene, 3, torch.Generator().manual_seed(0))
    K, w2c, px, depth = batch["K"], batch["world_to_cam"], batch["pixels"], batch["depth"]
    b, _, h, w = px.shape
    assert (depth > 0).all()
    rays = torch.linalg.inv(K) @ torch.cat((px.flatten(2), torch.ones(b, 1, h * w)), 1)
    p_cam = rays * depth.flatten(1)[:, None]
    R, t = w2c[:, :, :3], w2c[:, :, 3:]
    p_world = (R.transpose(1, 2) @ (p_cam - t)).view(b, 3, h, w)
    loss, stats = pretrain_loss(p_world, w2c, K, px, depth, soft_clamp=10, depth_weight=10)
    assert float(loss) < 1e-3 and stats["valid_fraction"] == 1.0 and stats["median_depth_err_m"] < 1e-4
    wrong, stats_wrong = pretrain_loss(p_world + 0.3, w2c, K, px, depth, soft_clamp=10, depth_weight=10)
    assert float(wrong) > 1.0 and stats_wrong["median_px"] > 1.0
    behind, stats_behind = pretrain_loss(-p_world, w2c, K, px, depth, soft_clamp=10)
    assert stats_behind["valid_fraction"] < 0.5 and float(behind) > 1.0
    with pytest.raises(ValueError, match="world_to_cam"):
        pretrain_loss(p_world, w2c[:, :2], K, px, depth, soft_clamp=10)


def test_dyntanh_schedule_goes_from_soft_clamp_to_min():
    assert dyntanh_clamp(0, 100, 50, 1) == pytest.approx(50)
    assert dyntanh_clamp(100, 100, 50, 1) == pytest.approx(1)
    assert 1 < dyntanh_clamp(50, 100, 50, 1) < 50


def test_pretraining_writes_a_loadable_ace_layout_encoder(scenes, tmp_path):
    out = tmp_path / "enc.pt"
    torch.manual_seed(42)
    initial = ACEEncoder().state_dict()
    pretrain_encoder([str(s) for s in scenes], out, PretrainConfig(**TINY), progress=False)
    raw = torch.load(out, weights_only=True)
    assert [(k, tuple(v.shape)) for k, v in raw.items()] == list(ACE_ENCODER_LAYOUT)
    assert len(raw) == 22 and all(v.dtype == torch.float32 for v in raw.values())
    encoder = load_encoder(out)  # strict load through the public loader
    assert encoder.out_channels == 512
    assert not torch.equal(raw["conv1.weight"], initial["conv1.weight"]), "the encoder was not trained"
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta["iterations"] == 4 and meta["scenes"] == ["s0", "s1"] and meta["encoder_id"].startswith("ace:")
    assert Path(str(out) + ".ckpt").exists()


def test_resume_after_a_crash_continues_exactly(scenes, tmp_path, monkeypatch):
    dirs = [str(s) for s in scenes]
    straight = tmp_path / "straight.pt"
    pretrain_encoder(dirs, straight, PretrainConfig(**TINY), progress=False)

    crashed = tmp_path / "crashed.pt"
    real_sample, calls = trainer_module.sample_batch, {"n": 0}

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "sample_batch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        pretrain_encoder(dirs, crashed, PretrainConfig(**TINY), progress=False)
    monkeypatch.setattr(trainer_module, "sample_batch", real_sample)
    assert not crashed.exists()
    ckpt = trainer_module.read_checkpoint(str(crashed) + ".ckpt")
    assert ckpt["iteration"] == 2
    pretrain_encoder([], crashed, None, resume=str(crashed) + ".ckpt", progress=False)
    a, b = torch.load(straight, weights_only=True), torch.load(crashed, weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_scenes_and_foreign_files(scenes, tmp_path):
    out = tmp_path / "enc.pt"
    pretrain_encoder([str(scenes[0])], out, PretrainConfig(**{**TINY, "iterations": 1}), progress=False)
    with pytest.raises(ValueError, match="scenes"):
        pretrain_encoder([str(scenes[1])], out, None, resume=str(out) + ".ckpt", progress=False)
    with pytest.raises(ValueError, match="not a glace-ros pretraining checkpoint"):
        pretrain_encoder([], out, None, resume=out, progress=False)


def test_ace_encoder_state_dict_rejects_other_layouts():
    with pytest.raises(ValueError, match="res2_conv3.weight"):
        ace_encoder_state_dict(ACEEncoder(out_channels=64))


def test_config_validation_names_the_option():
    with pytest.raises(ValueError, match="batch_images"):
        PretrainConfig(batch_images=0).validate()
    with pytest.raises(ValueError, match="unknown pretraining options"):
        PretrainConfig.from_dict({"iterationz": 3})


def test_cli_runs_and_reports_bad_input(scenes, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    argv = [str(s) for s in scenes] + ["--output", str(out), "--iterations", "2", "--image_height", "32",
                                        "--head_channels", "16", "--batch_images", "1", "--no-progress"]
    assert cli_main(argv) == 0 and out.exists()
    with pytest.raises(SystemExit):
        cli_main([str(tmp_path / "missing"), "--output", str(out)])
    assert "scene folder not found" in capsys.readouterr().err


def _ddp_worker(rank: int, world: int, port: int, dirs: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    pretrain_encoder(dirs, out, PretrainConfig(**{**TINY, "iterations": 2}), progress=False)
    torch.distributed.destroy_process_group()


def test_ddp_on_gloo_trains_and_rank0_writes(scenes, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, [str(s) for s in scenes], str(out)), nprocs=2)
    encoder = load_encoder(out)
    assert math.isfinite(float(encoder.conv1.weight.detach().sum()))
    assert json.loads(Path(str(out) + ".json").read_text())["world_size"] == 2
