"""ACE encoder, GLACE head and Regressor: official layouts, shapes, and numerics against the spec."""
from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from glace_core import network
from glace_core.encoder import ACE_ENCODER_LAYOUT, ACEEncoder, feature_size
from glace_core.head import GlaceHead, split_input_channels
from glace_core.map_files import EncoderMismatchError, MapFileError
from glace_core.network import Regressor, load_encoder, load_head

# Spec section a, written out independently of the implementation.
SPEC_ENCODER_SHAPES = [
    ("conv1", (32, 1, 3, 3)), ("conv2", (64, 32, 3, 3)), ("conv3", (128, 64, 3, 3)), ("conv4", (256, 128, 3, 3)),
    ("res1_conv1", (256, 256, 3, 3)), ("res1_conv2", (256, 256, 1, 1)), ("res1_conv3", (256, 256, 3, 3)),
    ("res2_conv1", (512, 256, 3, 3)), ("res2_conv2", (512, 512, 1, 1)), ("res2_conv3", (512, 512, 3, 3)),
    ("res2_skip", (512, 256, 1, 1)),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def official_encoder_state_dict(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """A seeded fp32 state dict in the official ace_encoder_pretrained.pt layout, built without our classes."""
    gen = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for name, shape in SPEC_ENCODER_SHAPES:
        fan_in = shape[1] * shape[2] * shape[3]
        sd[f"{name}.weight"] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
        sd[f"{name}.bias"] = torch.randn(shape[0], generator=gen) * 0.05
    return sd


def reference_encoder(sd, x):
    """Spec section a with plain functional ops."""
    def conv(name, t, stride=1):
        w = sd[f"{name}.weight"]
        return F.conv2d(t, w, sd[f"{name}.bias"], stride=stride, padding=(w.shape[-1] - 1) // 2)

    t = F.relu(conv("conv1", x))
    t = F.relu(conv("conv2", t, 2))
    t = F.relu(conv("conv3", t, 2))
    res = F.relu(conv("conv4", t, 2))
    t = F.relu(conv("res1_conv1", res))
    t = F.relu(conv("res1_conv2", t))
    t = F.relu(conv("res1_conv3", t))
    res = res + t
    t = F.relu(conv("res2_conv1", res))
    t = F.relu(conv("res2_conv2", t))
    t = F.relu(conv("res2_conv3", t))
    return conv("res2_skip", res) + t


def reference_head(sd, local, global_vec, blocks, homogeneous, clusters):
    """Spec section b with plain functional ops; sd is an unprefixed head state dict (float32)."""
    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"])

    n, _, h, w = local.shape
    x = local if global_vec is None else torch.cat(
        [global_vec[:, :, None, None].expand(n, global_vec.shape[1], h, w), local], 1)
    t = F.relu(conv("res3_conv1", x))
    t = F.relu(conv("res3_conv2", t))
    t = F.relu(conv("res3_conv3", t))
    res = (conv("head_skip", x) if "head_skip.weight" in sd else x) + t
    for i in range(blocks):
        t = F.relu(conv(f"{i}c0", res))
        t = F.relu(conv(f"{i}c1", t))
        t = F.relu(conv(f"{i}c2", t))
        res = res + t
    s = F.relu(conv("fc1", res))
    s = F.relu(conv("fc2", s))
    out = conv("fc3", s)
    if homogeneous:
        beta = float(sd["h_beta"])
        hw = F.softplus(out[:, 3:4], beta=beta) + 0.25
        hw = torch.clamp(hw, max=100.0)
        out = out[:, :3] / hw
    if clusters > 1:
        prob = torch.softmax(conv("fcc", s), dim=1)  # (N, K, h, w)
        centres = sd["centers"].view(clusters, 3)
        offset = torch.einsum("nkhw,kc->nchw", prob, centres)
    else:
        offset = sd["mean"].view(1, 3, 1, 1)
    return out + offset


def seeded_head(seed=0, **kwargs) -> GlaceHead:
    torch.manual_seed(seed)
    head = GlaceHead(**kwargs)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
        k = head.num_decoder_clusters
        if k > 1:
            head.set_centers(torch.randn(k, 3) * 5)
        else:
            head.set_mean(torch.tensor([1.5, -2.0, 3.25]))
    return head.eval()


def test_encoder_layout_matches_official_file():
    sd = ACEEncoder().state_dict()
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [(k, s) for k, s in ACE_ENCODER_LAYOUT]
    expected = [item for name, shape in SPEC_ENCODER_SHAPES
                for item in ((f"{name}.weight", shape), (f"{name}.bias", (shape[0],)))]
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == expected
    assert len(sd) == 22
    assert sum(v.numel() for v in sd.values()) == 5_568_000


@pytest.mark.parametrize("hw", [(17, 23), (33, 47), (8, 9), (1, 1), (40, 64)])
def test_encoder_output_size_rounds_up(hw):
    enc = ACEEncoder().eval()
    with torch.no_grad():
        out = enc(torch.randn(1, 1, *hw))
    assert out.shape == (1, 512, math.ceil(hw[0] / 8), math.ceil(hw[1] / 8))
    assert feature_size(*hw) == tuple(out.shape[-2:])


def test_encoder_rejects_bad_input():
    enc = ACEEncoder()
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        enc(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="floating"):
        enc(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))


def test_official_encoder_file_matches_spec_numerics(tmp_path):
    sd = official_encoder_state_dict(seed=3)
    path = tmp_path / "ace_encoder_pretrained.pt"
    torch.save(sd, path)
    enc = load_encoder(path)
    assert not enc.training and enc.out_channels == 512 and enc.name == "ace"
    assert enc.sha256 and enc.source_path == str(path)
    x = torch.randn(2, 1, 29, 43, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = enc(x)
        ref = reference_encoder(sd, x)
    assert ours.shape == (2, 512, 4, 6)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert ref.abs().mean() > 1e-2  # a non-trivial signal, so the comparison means something


@pytest.mark.parametrize("damage, needle", [
    ("missing", "res1_conv2.bias"), ("shape", "res2_skip.weight"), ("extra", "bogus.weight")])
def test_encoder_file_with_wrong_keys_fails_naming_them(tmp_path, damage, needle):
    sd = official_encoder_state_dict()
    if damage == "missing":
        del sd["res1_conv2.bias"]
    elif damage == "shape":
        sd["res2_skip.weight"] = torch.zeros(512, 128, 1, 1)
    else:
        sd["bogus.weight"] = torch.zeros(3)
    path = tmp_path / "enc.pt"
    torch.save(sd, path)
    with pytest.raises(MapFileError) as err:
        load_encoder(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_missing_default_encoder_falls_back_to_xfeat(tmp_path, monkeypatch):
    from glace_core import encoder_registry
    monkeypatch.setattr(encoder_registry, "DEFAULT_ENCODER_FILE", tmp_path / "weights" / "default_encoder.pt")
    encoder = load_encoder(None)
    assert encoder.out_channels == 64 and encoder.encoder_id.startswith("xfeat")


def test_missing_encoder_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_encoder(tmp_path / "nowhere.pt")


@pytest.mark.parametrize("kwargs, use_global", [
    (dict(local_channels=512, global_channels=256, head_channels=768), True),  # GLACE default, skip = Identity
    (dict(local_channels=64, global_channels=256, head_channels=96, mlp_ratio=2.0, num_head_blocks=2,
          num_decoder_clusters=5), True),
    (dict(local_channels=64, global_channels=0, head_channels=64, num_head_blocks=0, use_homogeneous=False), False),
    (dict(local_channels=64, global_channels=256, head_channels=128, num_head_blocks=3,
          use_homogeneous=False, num_decoder_clusters=4), True),
])
def test_head_matches_spec_numerics(tmp_path, kwargs, use_global):
    head = seeded_head(seed=5, **kwargs)
    path = tmp_path / "head.pt"
    torch.save(OrderedDict((k, v.half()) for k, v in head.state_dict().items()), path)  # official layout
    loaded = load_head(path)
    sd32 = {k: v.float() for k, v in torch.load(path, weights_only=True).items()}
    gen = torch.Generator().manual_seed(2)
    local = torch.relu(torch.randn(2, kwargs["local_channels"], 3, 5, generator=gen))
    glob = F.normalize(torch.randn(2, 256, generator=gen), dim=1) if use_global else None
    with torch.no_grad():
        ours = loaded(local, glob)
    ref = reference_head(sd32, local, glob, kwargs.get("num_head_blocks", 1),
                         kwargs.get("use_homogeneous", True), kwargs.get("num_decoder_clusters", 1))
    assert ours.dtype == torch.float32 and ours.shape == (2, 3, 3, 5)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def _constant_head(raw_w: float, xyz=(1.0, 2.0, 3.0), mean=(10.0, 20.0, 30.0)) -> GlaceHead:
    head = GlaceHead(local_channels=8, global_channels=0, head_channels=8)
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        head.fc3.bias.copy_(torch.tensor([*xyz, raw_w]))
        head.set_mean(torch.tensor(mean))
    return head.eval()


def test_homogeneous_output_math_by_hand():
    feats = torch.rand(1, 8, 2, 2)
    beta = math.log(2.0) / 0.75
    assert GlaceHead().h_beta.item() == pytest.approx(beta, rel=1e-6)
    xyz = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    mean = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        # raw 0: softplus(0, beta) = ln2 / beta = 0.75, + 0.25 -> h_w = 1
        out0 = _constant_head(0.0)(feats, None)
        # very negative: softplus -> 0, h_w = max_inv_scale 0.25 -> xyz * 4 (max scale)
        out_neg = _constant_head(-1e4)(feats, None)
        # very positive: h_w clamped at min_inv_scale 100 -> xyz * 0.01 (min scale)
        out_pos = _constant_head(1e4)(feats, None)
        # raw 2: h_w = softplus(2, beta) + 0.25 computed by hand
        out2 = _constant_head(2.0)(feats, None)
    torch.testing.assert_close(out0, (xyz + mean).expand(1, 3, 2, 2), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out_neg, (4 * xyz + mean).expand(1, 3, 2, 2), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(out_pos, (0.01 * xyz + mean).expand(1, 3, 2, 2), rtol=1e-6, atol=1e-5)
    h_w = math.log1p(math.exp(beta * 2.0)) / beta + 0.25
    torch.testing.assert_close(out2, (xyz / h_w + mean).expand(1, 3, 2, 2), rtol=1e-6, atol=1e-5)
    # the mean is added after the division: (xyz + mean) * 4 would be far off
    assert not torch.allclose(out_neg, 4 * (xyz + mean))


def test_position_decoder_is_convex_combination_of_centres():
    k = 5
    head = GlaceHead(local_channels=8, global_channels=0, head_channels=16, num_decoder_clusters=k)
    centres = torch.tensor([[0.0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10], [5, 5, 5]])
    with torch.no_grad():
        head.fc3.weight.zero_()
        head.fc3.bias.zero_()  # xyz = 0, h_w = 1: the output is the decoded mean alone
        head.set_centers(centres)
    head.eval()
    feats = torch.rand(2, 8, 3, 4, generator=torch.Generator().manual_seed(0))
    assert head.num_head_blocks == 1
    with torch.no_grad():
        out = head(feats)
        x = feats
        t = F.relu(head.res3_conv3(F.relu(head.res3_conv2(F.relu(head.res3_conv1(x))))))
        res = head.head_skip(x) + t
        res = res + F.relu(getattr(head, "0c2")(F.relu(getattr(head, "0c1")(F.relu(getattr(head, "0c0")(res))))))
        s = F.relu(head.fc2(F.relu(head.fc1(res))))
        weights = torch.softmax(head.fcc(s), dim=1)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 3, 4))
    torch.testing.assert_close(out, torch.einsum("nkhw,kc->nchw", weights, centres), rtol=1e-5, atol=1e-5)
    assert out.min() >= 0 and out.max() <= 10  # inside the hull's bounding box
    # a dominant logit selects its centre
    with torch.no_grad():
        head.fcc.weight.zero_()
        head.fcc.bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0, 0.0]))
        picked = head(feats)
    torch.testing.assert_close(picked, centres[2].view(1, 3, 1, 1).expand(2, 3, 3, 4), rtol=1e-5, atol=1e-4)


def test_global_features_come_first_and_broadcast():
    head = seeded_head(seed=1, local_channels=16, global_channels=256, head_channels=64)
    local = torch.rand(2, 16, 3, 4)
    glob = F.normalize(torch.randn(2, 256), dim=1)
    x = head.build_input(local, glob)
    assert x.shape == (2, 272, 3, 4)
    torch.testing.assert_close(x[:, :256], glob[:, :, None, None].expand(2, 256, 3, 4))
    torch.testing.assert_close(x[:, 256:], local)
    with torch.no_grad():
        a = head(local, glob)
        b = head(local, glob[:, :, None, None].expand(2, 256, 3, 4).contiguous())  # training layout
        c = head(local, torch.flip(glob, [0]))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # the global features matter
    with pytest.raises(ValueError, match="needs global features"):
        head(local, None)
    with pytest.raises(ValueError, match=r"\(2, 256\)"):
        head(local, torch.randn(2, 128))
    with pytest.raises(ValueError, match="local features"):
        head(torch.rand(2, 8, 3, 4), glob)


def test_head_without_global_input_ignores_global_features():
    head = seeded_head(seed=2, local_channels=16, global_channels=0, head_channels=16)
    local = torch.rand(1, 16, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(head(local, None), head(local, torch.randn(1, 256)))


def test_set_mean_and_centers_validate_shapes():
    head = GlaceHead(local_channels=8, global_channels=0, head_channels=8)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        head.set_mean(torch.zeros(4))
    with pytest.raises(ValueError, match="set_centers"):
        GlaceHead(local_channels=8, global_channels=0, head_channels=8, num_decoder_clusters=3).set_mean([0, 0, 0])
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        GlaceHead(local_channels=8, global_channels=0, head_channels=8, num_decoder_clusters=3).set_centers(
            torch.zeros(2, 3))
    head.set_centers([[1.0, 2.0, 3.0]])  # K = 1 sets the mean
    assert head.mean.view(-1).tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("in_channels, split", [(768, (256, 512)), (512, (0, 512)), (320, (256, 64)),
                                                 (64, (0, 64)), (128, (0, 128))])
def test_input_split_inference(in_channels, split):
    assert split_input_channels(in_channels) == split


def test_split_override_is_validated():
    assert split_input_channels(512, 256) == (256, 256)
    with pytest.raises(ValueError, match="global_channels"):
        split_input_channels(256, 256)


def test_regressor_chains_encoder_and_head(tmp_path):
    torch.save(official_encoder_state_dict(seed=4), tmp_path / "enc.pt")
    head = seeded_head(seed=4)
    torch.save(OrderedDict((k, v.half()) for k, v in head.state_dict().items()), tmp_path / "head.pt")
    reg = network.load_regressor(tmp_path / "enc.pt", tmp_path / "head.pt")
    img = torch.randn(1, 1, 27, 35)
    glob = F.normalize(torch.randn(1, 256), dim=1)
    with torch.no_grad():
        out = reg(img, glob)
        expected = reg.head(reg.encoder(img), glob)
    assert out.shape == (1, 3, 4, 5) and reg.stride == 8
    torch.testing.assert_close(out, expected)


def test_regressor_rejects_head_for_other_encoder():
    head = GlaceHead(local_channels=64, global_channels=256, head_channels=32)
    with pytest.raises(EncoderMismatchError, match="64 output channels"):
        Regressor(ACEEncoder(), head)
