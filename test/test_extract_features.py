"""glace-extract-features: features.npy per split, in sorted image order, never from random weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glace_core.cli.extract_features import main
from training_fixtures import small_scene

RES = (64, 96)  # a small R2Former input keeps the test fast


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return small_scene(tmp_path_factory.mktemp("feat") / "scene", seed=5, n_train=3, n_test=2, height=48, width=64)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint in the official R2Former layout, with random weights, at RES."""
    from glace_core.r2former import R2FormerDescriptor

    torch.manual_seed(0)
    model = R2FormerDescriptor(RES)
    path = tmp_path_factory.mktemp("ckpt") / "r2former.pth"
    torch.save({"model_state_dict": {f"module.backbone.{k}": v for k, v in model.backbone.state_dict().items()}}, path)
    return path


def test_r2former_features_in_sorted_order(scene, checkpoint, capsys):
    from glace_core.dataset import SceneSplit
    from glace_core.r2former import load_r2former

    torch.set_num_threads(1)
    assert main([str(scene), "--checkpoint", str(checkpoint), "--resolution", *map(str, RES), "--batch_size", "2",
                 "--device", "cpu", "--no-progress"]) == 0
    descriptor = load_r2former(checkpoint, "cpu", RES)
    for split, n in (("train", 3), ("test", 2)):
        feats = np.load(scene / split / "features.npy")
        assert feats.shape == (n, 256) and feats.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
        data = SceneSplit(scene, split)
        for i in range(n):
            rgb = torch.from_numpy(np.array(data.load_rgb(i))).permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                np.testing.assert_allclose(feats[i], descriptor(rgb)[0].numpy(), atol=1e-4)
    assert len(set(np.round(np.load(scene / "train" / "features.npy")[:, 0], 6))) == 3  # rows differ
    assert not list(scene.glob("*/.features.npy*"))  # no temporary file left


def test_zero_features_must_be_chosen_explicitly(scene, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(scene)])
    assert exc.value.code == 2 and "--checkpoint" in capsys.readouterr().err
    assert main([str(scene), "--global-features", "none", "--feat_name", "zeros.npy"]) == 0
    for split, n in (("train", 3), ("test", 2)):
        feats = np.load(scene / split / "zeros.npy")
        assert feats.shape == (n, 256) and feats.dtype == np.float32 and not feats.any()
    assert main([str(scene), "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert "file not found" in capsys.readouterr().err
