"""R2Former global descriptor: official checkpoint layout, pos_embed resampling, unit-norm outputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from glace_core.map_files import MapFileError
from glace_core.r2former import R2FormerDescriptor, load_r2former

SMALL = (64, 80)  # 4 x 5 patches: fast on CPU


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """A seeded CVPR23_DeitS_Rerank.pth look-alike: 480x640 backbone (1202-token pos_embed) + other keys."""
    torch.manual_seed(0)
    model = R2FormerDescriptor()  # (480, 640)
    backbone = model.backbone.state_dict()
    model_sd = {f"module.backbone.{k}": v.clone() for k, v in backbone.items()}
    model_sd["module.reranker.fc.weight"] = torch.randn(4, 4)  # not backbone: must be ignored
    path = tmp_path_factory.mktemp("r2former") / "CVPR23_DeitS_Rerank.pth"
    torch.save({"model_state_dict": model_sd, "epoch": 7}, path)
    return path, backbone


def test_backbone_keys_match_official_layout(official_checkpoint):
    _, backbone = official_checkpoint
    assert backbone["pos_embed"].shape == (1, 1202, 384)
    assert backbone["cls_token"].shape == (1, 1, 384) and backbone["dist_token"].shape == (1, 1, 384)
    assert backbone["patch_embed.proj.weight"].shape == (384, 3, 16, 16)
    assert backbone["head.weight"].shape == (256, 384) and backbone["head_dist.weight"].shape == (256, 384)
    assert backbone["blocks.11.attn.qkv.bias"].shape == (1152,)
    assert backbone["blocks.0.mlp.fc1.weight"].shape == (1536, 384)
    assert "blocks.12.norm1.weight" not in backbone and "norm.weight" in backbone
    assert len(backbone) == 155


def test_loads_official_checkpoint_at_default_resolution(official_checkpoint):
    path, backbone = official_checkpoint
    model = load_r2former(path)
    assert model.resolution == (480, 640) and not model.training
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(backbone)
    assert all(torch.equal(loaded[k], backbone[k]) for k in backbone)
    with torch.no_grad():
        desc = model(torch.rand(1, 3, 120, 160, generator=torch.Generator().manual_seed(0)))
    assert desc.shape == (1, 256)
    torch.testing.assert_close(desc.norm(dim=1), torch.ones(1))


def test_small_resolution_output_matches_manual_computation(official_checkpoint):
    path, backbone = official_checkpoint
    model = load_r2former(path, resolution=SMALL)
    expected_pos = resample_abs_pos_embed(backbone["pos_embed"], new_size=[4, 5], old_size=[30, 40],
                                          num_prefix_tokens=2)
    torch.testing.assert_close(model.backbone.pos_embed.data, expected_pos)
    torch.testing.assert_close(model.backbone.pos_embed.data[:, :2], backbone["pos_embed"][:, :2])

    images = torch.rand(2, 3, 50, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        desc = model(images)
        # manual pipeline: ImageNet normalisation, bilinear resize without antialias, both heads averaged
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = F.interpolate((images - mean) / std, size=SMALL, mode="bilinear", align_corners=False, antialias=False)
        tokens = model.backbone.forward_features(x)
        cls_out = tokens[:, 0] @ backbone["head.weight"].T + backbone["head.bias"]
        dist_out = tokens[:, 1] @ backbone["head_dist.weight"].T + backbone["head_dist.bias"]
        expected = F.normalize((cls_out + dist_out) / 2, dim=1)
        cls_only = F.normalize(cls_out, dim=1)
    assert desc.shape == (2, 256) and desc.dtype == torch.float32
    torch.testing.assert_close(desc.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(desc, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(desc, cls_only, atol=1e-3)  # the distillation head is used too
    assert not torch.allclose(desc[0], desc[1], atol=1e-3)  # different images, different descriptors


def test_checkpoint_at_matching_small_resolution_needs_no_resampling(tmp_path):
    torch.manual_seed(2)
    src = R2FormerDescriptor(resolution=SMALL)
    path = tmp_path / "small.pth"
    torch.save({"model_state_dict": {f"module.backbone.{k}": v for k, v in src.backbone.state_dict().items()}},
               path)
    model = load_r2former(path, resolution=SMALL)
    images = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(images), src.eval()(images))
    with pytest.raises(MapFileError, match="pos_embed has 22 tokens"):
        load_r2former(path, resolution=(32, 32))


def test_bad_checkpoints_fail_clearly(tmp_path, official_checkpoint):
    _, backbone = official_checkpoint
    no_dict = tmp_path / "no_dict.pth"
    torch.save({"state_dict": {}}, no_dict)
    with pytest.raises(MapFileError, match="model_state_dict"):
        load_r2former(no_dict)
    no_backbone = tmp_path / "no_backbone.pth"
    torch.save({"model_state_dict": {"module.reranker.w": torch.zeros(1)}}, no_backbone)
    with pytest.raises(MapFileError, match="module.backbone."):
        load_r2former(no_backbone)
    small = {k: v for k, v in backbone.items() if not k.startswith("blocks.")}
    small.update({k: v for k, v in backbone.items() if k.startswith("blocks.0.")})  # blocks 1..11 missing
    missing = tmp_path / "missing.pth"
    torch.save({"model_state_dict": {f"module.backbone.{k}": v for k, v in small.items()}}, missing)
    with pytest.raises(MapFileError, match=r"blocks\.11\.attn\.qkv\.weight") as err:
        load_r2former(missing, resolution=SMALL)
    assert str(missing) in str(err.value)


def test_input_validation():
    model = R2FormerDescriptor(resolution=(32, 32)).eval()
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(torch.rand(1, 3, 32, 32) * 255)
    with pytest.raises(ValueError, match="multiples of 16"):
        R2FormerDescriptor(resolution=(30, 40))
