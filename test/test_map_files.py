"""Map and weights files: official head layout, safe loading, strict checks, sidecar metadata."""
from __future__ import annotations

import itertools
import os
import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from glace_core.encoder import ACEEncoder
from glace_core.head import GlaceHead
from glace_core.map_files import (EncoderMismatchError, MapFileError, check_encoder_compatibility,
                                  encoder_metadata, file_sha256, infer_head_config, load_state_dict_file,
                                  read_map_metadata, save_head, sidecar_path)
from glace_core.network import load_encoder, load_head

BUFFERS = ["max_scale", "min_scale", "max_inv_scale", "h_beta", "min_inv_scale"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec_key_order(blocks: int, clusters: int, skip: bool, homogeneous: bool = True) -> list[str]:
    """GLACE_SPEC.md section b key order, spelled out."""
    keys = (BUFFERS if homogeneous else []) + (["centers"] if clusters > 1 else ["mean"])
    convs = (["head_skip"] if skip else []) + ["res3_conv1", "res3_conv2", "res3_conv3"]
    convs += [f"{i}c{j}" for i in range(blocks) for j in range(3)]
    convs += ["fc1", "fc2"] + (["fcc"] if clusters > 1 else []) + ["fc3"]
    return keys + [f"{c}.{p}" for c in convs for p in ("weight", "bias")]


def official_head_file(path, head: GlaceHead) -> None:
    """Write ``head`` the way GLACE does: state_dict with every tensor .half()."""
    torch.save(OrderedDict((k, v.half()) for k, v in head.state_dict().items()), path)


def make_head(seed=0, **kwargs) -> GlaceHead:
    torch.manual_seed(seed)
    head = GlaceHead(**kwargs)
    if head.num_decoder_clusters > 1:
        head.set_centers(torch.randn(head.num_decoder_clusters, 3) * 3)
    else:
        head.set_mean(torch.tensor([0.5, -1.0, 2.0]))
    return head.eval()


def test_save_head_round_trip_is_bit_identical(tmp_path):
    head = make_head(seed=1, num_head_blocks=2, num_decoder_clusters=3, local_channels=64, head_channels=96)
    path = tmp_path / "map.pt"
    save_head(head, path, metadata={"training": {"max_iterations": 30000}})
    raw = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw.values())
    for k, v in head.state_dict().items():  # buffers included
        assert torch.equal(raw[k], v.half()), k
    loaded = load_head(path)
    assert all(p.dtype == torch.float32 for p in loaded.state_dict().values())
    save_head(loaded, tmp_path / "again.pt")
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert list(again) == list(raw)
    assert all(torch.equal(again[k], raw[k]) for k in raw)
    # outputs: the reloaded head equals the original head with its weights rounded to fp16
    rounded = make_head(seed=1, num_head_blocks=2, num_decoder_clusters=3, local_channels=64, head_channels=96)
    rounded.load_state_dict({k: v.float() for k, v in raw.items()})
    local, glob = torch.rand(2, 64, 3, 4), F.normalize(torch.randn(2, 256), dim=1)
    with torch.no_grad():
        assert torch.equal(loaded(local, glob), rounded(local, glob))
        assert torch.equal(loaded(local, glob), load_head(tmp_path / "again.pt")(local, glob))


def test_default_head_size_and_key_order(tmp_path):
    head = GlaceHead()
    assert sum(p.numel() for p in head.parameters()) == 4_727_812
    path = tmp_path / "map.pt"
    save_head(head, path)
    assert list(torch.load(path, weights_only=True)) == spec_key_order(1, 1, skip=False)
    assert 9.3e6 < os.path.getsize(path) < 9.6e6


@pytest.mark.parametrize("blocks, clusters, skip, homogeneous", [(1, 1, False, True), (3, 5, True, True),
                                                                 (0, 2, True, False), (2, 1, False, False)])
def test_saved_key_order_is_spec_order(tmp_path, blocks, clusters, skip, homogeneous):
    head = make_head(local_channels=64, head_channels=32 if skip else 320, num_head_blocks=blocks,
                     num_decoder_clusters=clusters, use_homogeneous=homogeneous)
    save_head(head, tmp_path / "m.pt")
    assert list(torch.load(tmp_path / "m.pt", weights_only=True)) == spec_key_order(blocks, clusters, skip,
                                                                                   homogeneous)


# local 64 + global 256 = 320 inputs; h = 320 makes head_skip the Identity.
@pytest.mark.parametrize("clusters, blocks, ratio, h",
                         list(itertools.product([1, 5], [1, 2, 3], [1.0, 2.0], [320, 96, 160])))
def test_architecture_is_inferred_from_official_files(tmp_path, clusters, blocks, ratio, h):
    head = make_head(local_channels=64, global_channels=256, head_channels=h, mlp_ratio=ratio,
                     num_head_blocks=blocks, num_decoder_clusters=clusters)
    path = tmp_path / "head.pt"
    official_head_file(path, head)
    loaded = load_head(path)
    assert (loaded.in_channels, loaded.local_channels, loaded.global_channels) == (320, 64, 256)
    assert (loaded.head_channels, loaded.mlp_ratio, loaded.num_head_blocks) == (h, ratio, blocks)
    assert loaded.use_homogeneous and loaded.num_decoder_clusters == clusters
    assert isinstance(loaded.head_skip, torch.nn.Identity) == (h == 320)
    assert loaded.metadata is None and not loaded.training


@pytest.mark.parametrize("kwargs, split", [
    (dict(local_channels=512, global_channels=256, head_channels=768), (256, 512)),  # GLACE default
    (dict(local_channels=512, global_channels=256, head_channels=512, mlp_ratio=2.0), (256, 512)),
    (dict(local_channels=512, global_channels=0, head_channels=512), (0, 512)),  # ACE head
])
def test_full_width_heads_infer_split(tmp_path, kwargs, split):
    path = tmp_path / "head.pt"
    official_head_file(path, make_head(**kwargs))
    loaded = load_head(path)
    assert (loaded.global_channels, loaded.local_channels) == split
    assert loaded.head_channels == kwargs["head_channels"] and loaded.mlp_ratio == kwargs.get("mlp_ratio", 1.0)


def test_infer_config_accepts_prefixed_and_combined_files(tmp_path):
    head = make_head(local_channels=64, head_channels=96, num_head_blocks=2, num_decoder_clusters=4)
    sd = head.state_dict()
    cfg = infer_head_config({f"heads.{k}": v for k, v in sd.items()})
    assert (cfg.num_head_blocks, cfg.num_decoder_clusters, cfg.head_channels, cfg.in_channels) == (2, 4, 96, 320)
    enc = ACEEncoder()
    combined = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
                **{f"heads.{k}": v.half() for k, v in sd.items()}}
    torch.save(combined, tmp_path / "net.pt")
    assert load_head(tmp_path / "net.pt").num_decoder_clusters == 4
    assert load_encoder(tmp_path / "net.pt").out_channels == 512
    torch.save({f"encoder.{k}": v for k, v in enc.state_dict().items()}, tmp_path / "enc.pt")
    assert torch.equal(load_encoder(tmp_path / "enc.pt").conv1.weight, enc.conv1.weight)
    with pytest.raises(MapFileError, match="no 'heads.' keys"):
        load_head(tmp_path / "enc.pt")  # an encoder is not a head
    torch.save(enc.state_dict(), tmp_path / "plain_enc.pt")
    with pytest.raises(MapFileError, match="res3_conv1"):
        load_head(tmp_path / "plain_enc.pt")


@pytest.mark.parametrize("damage, needle", [("missing", "fc2.bias"), ("extra", "7c0.bias"),
                                            ("shape", "fc1.weight")])
def test_head_file_with_wrong_keys_fails_naming_them(tmp_path, damage, needle):
    sd = OrderedDict((k, v.half()) for k, v in make_head(local_channels=64, head_channels=32).state_dict().items())
    if damage == "missing":
        del sd["fc2.bias"]
    elif damage == "extra":
        sd["7c0.bias"] = torch.zeros(32, dtype=torch.float16)
    else:
        sd["fc1.weight"] = torch.zeros(32, 16, 1, 1, dtype=torch.float16)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(MapFileError) as err:
        load_head(path)
    assert needle in str(err.value) and str(path) in str(err.value)


class _Payload:
    """Unpickling this creates a marker file: stands in for a malicious payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"fc1.weight": torch.zeros(2), "evil": _Payload(str(marker))}
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(MapFileError, match="refusing to load") as err:
        load_state_dict_file(path)
    assert str(path) in str(err.value)
    assert "weights_only=False" not in str(err.value) and "likely succeed" not in str(err.value)
    with pytest.raises(MapFileError):
        load_head(path)
    assert not marker.exists()
    # the payload is live: an unsafe load would have created the marker
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(str(probe)))).close()
    assert probe.exists()


def test_truncated_random_and_non_dict_files_fail_naming_the_file(tmp_path):
    head = make_head(local_channels=64, head_channels=32)
    good = tmp_path / "good.pt"
    save_head(head, good)
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "random.pt": os.urandom(4096),
        "empty.pt": b"",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    torch.save({"fc1.weight": "not a tensor"}, tmp_path / "str.pt")
    torch.save({"fc1.weight": torch.tensor([float("nan")])}, tmp_path / "nan.pt")
    torch.save({"fc1.weight": torch.tensor([1, 2])}, tmp_path / "int.pt")
    for name in [*cases, "list.pt", "str.pt", "nan.pt", "int.pt"]:
        with pytest.raises(MapFileError) as err:
            load_head(tmp_path / name)
        assert str(tmp_path / name) in str(err.value), name
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_head(tmp_path / "nope.pt")


def test_sidecar_metadata_round_trip(tmp_path):
    enc_path = tmp_path / "enc.pt"
    torch.save(ACEEncoder().state_dict(), enc_path)
    enc = load_encoder(enc_path)
    head = make_head(local_channels=512, head_channels=64)
    path = tmp_path / "scene.pt"
    side = save_head(head, path, metadata={"encoder": encoder_metadata(enc),
                                           "training": {"max_iterations": 100, "scene": tmp_path}})
    assert side == sidecar_path(path) and side.name == "scene.pt.json"
    meta = read_map_metadata(path)
    assert meta["encoder"] == {"name": "ace", "out_channels": 512, "sha256": file_sha256(enc_path),
                               "path": str(enc_path)}
    assert meta["head"]["in_channels"] == 768 and meta["head"]["global_channels"] == 256
    assert meta["training"] == {"max_iterations": 100, "scene": str(tmp_path)}
    assert meta["head_sha256"] == file_sha256(path)
    assert load_head(path).metadata == meta
    assert read_map_metadata(tmp_path / "no_such_map.pt") is None
    # a sidecar left over from another map is ignored
    save_head(make_head(seed=9, local_channels=512, head_channels=64), tmp_path / "other.pt")
    sidecar_path(path).write_text(sidecar_path(tmp_path / "other.pt").read_text())
    assert read_map_metadata(path) is None
    sidecar_path(path).write_text("{not json")
    with pytest.raises(MapFileError, match="scene.pt.json"):
        read_map_metadata(path)


def test_sidecar_split_overrides_inference(tmp_path):
    # 256 local + 256 global = 512 inputs, which on its own would read as an ACE head (0 + 512)
    head = make_head(local_channels=256, global_channels=256, head_channels=64)
    path = tmp_path / "m.pt"
    save_head(head, path)
    assert (load_head(path).global_channels, load_head(path).local_channels) == (256, 256)
    os.remove(sidecar_path(path))
    assert (load_head(path).global_channels, load_head(path).local_channels) == (0, 512)
    assert load_head(path, global_channels=256).local_channels == 256


def test_encoder_compatibility_checks(tmp_path):
    enc_a, enc_b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.manual_seed(0)
    torch.save(ACEEncoder().state_dict(), enc_a)
    torch.save(ACEEncoder().state_dict(), enc_b)
    a, b = load_encoder(enc_a), load_encoder(enc_b)
    head = make_head(local_channels=512, head_channels=64)
    save_head(head, tmp_path / "m.pt", metadata={"encoder": encoder_metadata(a)})
    loaded = load_head(tmp_path / "m.pt")
    check_encoder_compatibility(loaded, a)
    check_encoder_compatibility(read_map_metadata(tmp_path / "m.pt"), a)
    with pytest.raises(EncoderMismatchError, match="sha256"):
        check_encoder_compatibility(loaded, b)
    narrow = make_head(local_channels=64, head_channels=64)
    with pytest.raises(EncoderMismatchError, match="64 output channels.*gives 512"):
        check_encoder_compatibility(narrow, a)
    with pytest.raises(EncoderMismatchError, match="'xfeat'"):
        check_encoder_compatibility({"head": {"local_channels": 512}, "encoder": {"name": "xfeat"}}, a)


def test_atomic_writes_honour_the_umask(tmp_path):
    """Maps are readable by another service user: the umask decides, as for open(), not mkstemp's 0600."""
    import os

    from glace_core.io_utils import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "map.pt", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "private.pt", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "map.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.pt").stat().st_mode & 0o777 == 0o600
