"""glace_core.fast_inference: the same scene coordinates as the plain modules, and the same poses."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from glace_core.encoder import ACEEncoder
from glace_core.fast_inference import FastInferenceConfig, FastRegressor, FoldedHead
from glace_core.head import GlaceHead

RTOL = 1e-4


def _randomise(head: GlaceHead, seed: int) -> GlaceHead:
    """Weights scaled so activations neither vanish nor explode, a non-zero mean (or centres)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.normal_(0, m.in_channels ** -0.5, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
    if head.num_decoder_clusters > 1:
        head.set_centers(torch.randn(head.num_decoder_clusters, 3, generator=gen).numpy() * 3)
    else:
        head.set_mean([1.0, -2.0, 3.0])
    return head.eval()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _plain(encoder, head, image, g):
    with torch.inference_mode():
        return head(encoder(image), g)


@pytest.fixture(scope="module")
def ace():
    torch.manual_seed(0)
    return ACEEncoder().eval()


@pytest.fixture(scope="module")
def xfeat():
    from glace_core.xfeat_encoder import XFeatEncoder

    return XFeatEncoder().eval()


@pytest.mark.parametrize("hw", [(61, 83), (64, 80), (120, 97)])
def test_ace_paper_head_matches_plain(ace, hw):
    """ACE + the paper head (768 wide, 256-d global, identity skip) at odd and even image sizes."""
    head = _randomise(GlaceHead(), 1)
    image = torch.randn(1, 1, *hw, generator=torch.Generator().manual_seed(2))
    g = F.normalize(torch.randn(1, 256, generator=torch.Generator().manual_seed(3)), dim=1)
    ref = _plain(ace, head, image, g)
    out = FastRegressor(ace, head)(image, g)
    assert out.shape == ref.shape == (1, 3, -(-hw[0] // 8), -(-hw[1] // 8)) and out.dtype == torch.float32
    assert _rel_err(out, ref) <= RTOL
    # the global input matters: another descriptor gives other coordinates, in both paths alike
    g2 = F.normalize(torch.randn(1, 256, generator=torch.Generator().manual_seed(4)), dim=1)
    ref2 = _plain(ace, head, image, g2)
    assert _rel_err(ref2, ref) > 1e-3
    assert _rel_err(FastRegressor(ace, head)(image, g2), ref2) <= RTOL


@pytest.mark.parametrize("hw", [(59, 77), (96, 128)])
def test_xfeat_cpu_preset_head_matches_plain(xfeat, hw):
    from glace_core.training.config import TrainConfig

    cfg = TrainConfig.from_preset("cpu")
    head = _randomise(GlaceHead(64, 0, cfg.head_channels, cfg.mlp_ratio, cfg.num_head_blocks), 5)
    image = torch.randn(1, 1, *hw, generator=torch.Generator().manual_seed(6))
    ref = _plain(xfeat, head, image, None)
    assert _rel_err(FastRegressor(xfeat, head)(image, None), ref) <= RTOL


@pytest.mark.parametrize("kwargs", [
    dict(local_channels=64, global_channels=0, head_channels=64),  # no global, identity skip
    dict(local_channels=64, global_channels=0, head_channels=96),  # no global, conv skip
    dict(local_channels=64, global_channels=32, head_channels=96),  # global, identity skip
    dict(local_channels=64, global_channels=32, head_channels=48, num_head_blocks=2),  # global, conv skip
    dict(local_channels=64, global_channels=32, head_channels=48, num_head_blocks=0, mlp_ratio=0.5),
    dict(local_channels=64, global_channels=32, head_channels=48, use_homogeneous=False),
    dict(local_channels=64, global_channels=32, head_channels=48, num_decoder_clusters=4),
])
def test_folded_head_matches_glace_head(kwargs):
    head = _randomise(GlaceHead(**kwargs), 7)
    gen = torch.Generator().manual_seed(8)
    feats = torch.randn(2, kwargs["local_channels"], 7, 9, generator=gen)
    g = torch.randn(2, kwargs["global_channels"], generator=gen) if kwargs["global_channels"] else None
    with torch.inference_mode():
        ref = head(feats, g)
        out = FoldedHead(head).eval()(feats, g)
    assert out.shape == ref.shape and _rel_err(out, ref) <= RTOL


def _tiny_encoder():
    """A 64-channel ACE layout (cheap) for the wrapper's own tests."""
    torch.manual_seed(9)
    return ACEEncoder(out_channels=64).eval()


@pytest.mark.parametrize("config", [FastInferenceConfig(optimize="auto"), FastInferenceConfig(optimize="on"),
                                    FastInferenceConfig(optimize="off"), FastInferenceConfig(freeze=False),
                                    FastInferenceConfig(channels_last=False, fold_global=False),
                                    FastInferenceConfig(freeze=False, channels_last=False)])
def test_every_configuration_matches_plain(config):
    encoder = _tiny_encoder()
    head = _randomise(GlaceHead(64, 32, 48, num_head_blocks=1), 10)
    image = torch.randn(1, 1, 45, 53, generator=torch.Generator().manual_seed(11))
    g = torch.randn(1, 32, generator=torch.Generator().manual_seed(12))
    assert _rel_err(FastRegressor(encoder, head, config)(image, g), _plain(encoder, head, image, g)) <= RTOL


@pytest.mark.parametrize("faster", ["on", "off"])
def test_optimize_auto_keeps_the_faster_graph(monkeypatch, faster):
    """optimize="auto" times both graphs in turn (a fake clock makes ``faster`` take 1 s a call and
    the other 5 s) and keeps the faster: the oneDNN-optimised graph converts to mkldnn, the other does not."""
    import itertools

    import glace_core.fast_inference as fi

    encoder = _tiny_encoder().to(memory_format=torch.channels_last)
    image = torch.randn(1, 1, 40, 48).contiguous(memory_format=torch.channels_last)
    steps = itertools.cycle([1.0 if faster == "on" else 5.0, 1.0 if faster == "off" else 5.0])
    clock = {"t": 0.0, "calls": 0}

    def fake_perf_counter():  # called twice per timed graph call: start, then end
        clock["calls"] += 1
        if clock["calls"] % 2 == 0:
            clock["t"] += next(steps)
        return clock["t"]

    monkeypatch.setattr(fi.time, "perf_counter", fake_perf_counter)
    graph = fi.freeze_for_inference(encoder, (image,), "auto")
    assert clock["calls"] == 4 * fi.GRAPH_TRIALS
    assert ("mkldnn" in str(graph.graph)) == (faster == "on")
    with torch.no_grad():
        assert _rel_err(graph(image), encoder(image)) <= RTOL
    with pytest.raises(ValueError, match="optimize"):
        fi.freeze_for_inference(encoder, (image,), "maybe")
    with pytest.raises(ValueError, match="optimize"):
        FastInferenceConfig(optimize="maybe")
    monkeypatch.setenv(fi.OPTIMIZE_ENV_VAR, "off")  # the environment gives the default
    assert FastInferenceConfig().optimize == "off" and FastInferenceConfig(optimize="on").optimize == "on"
    monkeypatch.setenv(fi.OPTIMIZE_ENV_VAR, "fast")
    with pytest.raises(ValueError, match=fi.OPTIMIZE_ENV_VAR):
        FastInferenceConfig()


def test_graph_cache_per_shape_and_originals_untouched():
    encoder = _tiny_encoder()
    head = _randomise(GlaceHead(64, 32, 48), 13)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    fast = FastRegressor(encoder, head, FastInferenceConfig(max_cached_shapes=2))
    g = torch.randn(1, 32, generator=torch.Generator().manual_seed(14))
    for hw in [(40, 48), (33, 41), (40, 48), (24, 64)]:  # a shape seen before is served from the cache
        image = torch.randn(1, 1, *hw, generator=torch.Generator().manual_seed(hw[0]))
        assert _rel_err(fast(image, g), _plain(encoder, head, image, g)) <= RTOL
    assert len(fast._traced) == 2 and not fast._trace_failed
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in before.items())
    assert next(encoder.parameters()).is_contiguous()  # the original stays NCHW


def test_per_pixel_global_features_use_the_plain_modules():
    encoder = _tiny_encoder()
    head = _randomise(GlaceHead(64, 32, 48), 15)
    image = torch.randn(1, 1, 32, 40)
    g = torch.randn(1, 32, 4, 5)
    assert torch.equal(FastRegressor(encoder, head)(image, g), _plain(encoder, head, image, g))


def test_bad_inputs_raise():
    encoder = _tiny_encoder()
    fast = FastRegressor(encoder, _randomise(GlaceHead(64, 32, 48), 16))
    with pytest.raises(ValueError, match="needs global features"):
        fast(torch.randn(1, 1, 32, 32), None)
    with pytest.raises(ValueError, match="global features must have shape"):
        fast(torch.randn(1, 1, 32, 32), torch.randn(1, 31))
    with pytest.raises(ValueError, match="image must be"):
        fast(torch.randn(1, 3, 32, 32), torch.randn(1, 32))


def test_localizer_fast_and_plain_scene_coordinates_agree():
    """The fast path in fp32 against the plain modules (the default precision ``auto`` would run bf16
    on a CPU that has it: test_precision.py compares that)."""
    from glace_core.localizer import Localizer, LocalizerOptions

    encoder = _tiny_encoder()
    head = _randomise(GlaceHead(64, 0, 48), 17)
    fast = Localizer(encoder, head, "cpu", None, options=LocalizerOptions(precision="fp32"))
    plain = Localizer(encoder, head, "cpu", None, fast_inference=False)
    assert fast.fast_inference and not plain.fast_inference
    image = torch.randn(1, 1, 48, 56)
    (_, a), = fast.predict(image, None, 1)
    (_, b), = plain.predict(image, None, 1)
    assert a.shape == (3, 6, 7) and np.max(np.abs(a - b)) <= RTOL * np.max(np.abs(b))
    head.set_mean([10.0, 0.0, 0.0])  # weights changed after the first frame: refresh the snapshot
    fast.refresh_fast_path()
    assert np.allclose(fast.predict(image, None, 1)[0][1], plain.predict(image, None, 1)[0][1], rtol=0,
                       atol=RTOL * 20)


@pytest.mark.slow
def test_same_poses_on_the_tiny_scene(tiny_scene):
    """The node's tiny synthetic scene: plain and fast localizers give the same poses for the same seed."""
    from relocalizer_scene import pose_error

    from glace_core.localizer import Localizer, LocalizerOptions, RansacOptions

    opts = LocalizerOptions(image_resolution=tiny_scene.resolution, ransac=RansacOptions(seed=3), precision="fp32")
    fast = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu", options=opts)
    plain = Localizer.load(tiny_scene.map_path, tiny_scene.encoder, "cpu", fast_inference=False, options=opts)
    results = []
    for f in tiny_scene.frames:
        rf, rp = fast.localize(f.rgb, f.K), plain.localize(f.rgb, f.K)
        assert np.max(np.abs(rf.scene_coordinates - rp.scene_coordinates)) <= RTOL * np.max(np.abs(rp.scene_coordinates))
        assert rf.success == rp.success
        if rf.success:
            dt, dr = pose_error(rf.camera_to_world, rp.camera_to_world)
            assert dt < 1e-3 and dr < 1e-2 and abs(rf.inlier_count - rp.inlier_count) <= 1
        results.append(rf)
    assert sum(r.success for r in results) >= 1
