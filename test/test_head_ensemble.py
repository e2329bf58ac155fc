"""Ensemble maps: clusters, routing, the file layout, training plans and prediction."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from glace_core.head import GlaceHead
from glace_core.head_ensemble import HeadEnsemble, cluster_membership, routing_descriptor
from glace_core.map_files import (MapFileError, ensemble_state_dict, is_ensemble_state_dict, save_head, sidecar_path,
                                  split_ensemble_state_dict)
from glace_core.map_predictor import MapPredictor
from glace_core.network import load_head, load_map
from glace_core.training.ensemble import MIN_FRAMES_PER_CLUSTER, plan_clusters


def _head(seed: int, mean=(0.0, 0.0, 0.0), channels: int = 16, width: int = 24) -> GlaceHead:
    torch.manual_seed(seed)
    head = GlaceHead(local_channels=channels, global_channels=0, head_channels=width)
    for p in head.parameters():
        p.data.normal_(0, 0.2)
    head.set_mean(np.asarray(mean))
    return head.eval()


def _ensemble(k: int = 3, n: int = 9, channels: int = 16, seed: int = 0) -> tuple[HeadEnsemble, torch.Tensor]:
    """K random heads; mapping frame n belongs to cluster n % K; returns (ensemble, frame features (n, C, 6, 8))."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, channels, 6, 8, generator=gen)
    membership = torch.zeros(k, n)
    membership[torch.arange(n) % k, torch.arange(n)] = 1
    heads = [_head(seed + i, mean=(i, 0, 0), channels=channels) for i in range(k)]
    return HeadEnsemble(heads, routing_descriptor(feats), membership).eval(), feats


# --------------------------------------------------------------------------- clusters


def test_cluster_membership_disjoint_is_kmeans_and_overlap_adds_border_frames():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    # two blobs and one frame half-way between them
    centres = np.concatenate([rng.normal(0, 0.1, (10, 3)), rng.normal(0, 0.1, (10, 3)) + [4, 0, 0], [[2.1, 0, 0]]])
    disjoint = cluster_membership(centres, 2, overlap=1.0)
    labels = KMeans(n_clusters=2, random_state=0, n_init=10).fit_predict(centres)
    assert disjoint.shape == (2, 21) and np.array_equal(disjoint.argmax(0), labels)
    assert np.all(disjoint.sum(0) == 1)  # every frame in exactly one cluster
    wide = cluster_membership(centres, 2, overlap=1.3)
    assert np.all(wide >= disjoint)  # overlap only adds
    assert wide[:, 20].all() and wide[:, :20].sum() == 20  # only the middle frame joins both
    assert cluster_membership(centres, 1).all()


@pytest.mark.parametrize("args, message", [((np.zeros((4, 2)), 2), "must be \\(N, 3\\)"),
                                           ((np.zeros((4, 3)), 5), "num_clusters must be in"),
                                           ((np.zeros((4, 3)), 0), "num_clusters must be in"),
                                           ((np.zeros((4, 3)), 2, 0.9), "overlap must be >= 1")])
def test_cluster_membership_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        cluster_membership(*args)


def test_plan_clusters_caps_the_ensemble_and_keeps_the_reference_cluster_mode(caplog):
    rng = np.random.default_rng(1)
    poses = np.repeat(np.eye(4)[None], 25, axis=0)
    poses[:, :3, 3] = rng.normal(size=(25, 3))
    valid = list(range(25))
    plain = plan_clusters(poses, valid, None, None)
    assert (plain.frames, plain.members, plain.ensemble) == (valid, [valid], False)
    with caplog.at_level(logging.WARNING):
        capped = plan_clusters(poses, valid, 16, None, 1.3)
    assert len(capped.members) == 25 // MIN_FRAMES_PER_CLUSTER and capped.ensemble
    assert "ensemble gets 2 head(s)" in caplog.text
    assert set().union(*map(set, capped.members)) == set(valid)  # every frame trains some head
    member = capped.membership()
    assert member.shape == (2, 25) and [sorted(np.flatnonzero(r)) for r in member] == capped.members
    one = plan_clusters(poses, valid, 3, 1)  # --num_clusters 3 --cluster_idx 1: one head, no ensemble
    labels = cluster_membership(poses[:, :3, 3], 3)[1]
    assert one.frames == [i for i in valid if labels[i]] and not one.ensemble
    with pytest.raises(ValueError, match="exceeds the 25 frames"):
        plan_clusters(poses, valid, 30, 2)
    assert not plan_clusters(poses, valid[:9], 4, None).ensemble  # 9 frames: one head


# --------------------------------------------------------------------------- routing


def test_routing_descriptor_pools_a_2x2_grid_and_normalises():
    feats = torch.zeros(2, 3, 4, 6)
    feats[0, 0, :2, :3] = 1.0  # top-left quarter, channel 0
    d = routing_descriptor(feats)
    assert d.shape == (2, 12) and torch.allclose(d[0].norm(), torch.tensor(1.0))
    assert d[0].argmax().item() == 0 and torch.count_nonzero(d[0]) == 1
    with pytest.raises(ValueError, match="expects features \\(N, C, h, w\\)"):
        routing_descriptor(torch.zeros(3, 4, 6))


def test_route_ranks_the_cluster_of_the_most_similar_mapping_frame():
    ensemble, feats = _ensemble(k=3, n=9)
    for n in range(9):
        query = feats[n:n + 1] + 0.05 * torch.randn(1, *feats.shape[1:], generator=torch.Generator().manual_seed(n))
        order = ensemble.route(query)
        assert sorted(order) == [0, 1, 2] and order[0] == n % 3
        assert ensemble.route(query, 1) == [n % 3]
    with pytest.raises(ValueError, match="one image"):
        ensemble.route(feats[:2])
    with pytest.raises(ValueError, match="does not match"):
        ensemble.route(torch.zeros(1, 8, 6, 8))


def test_ensemble_rejects_inconsistent_parts():
    heads = [_head(0), _head(1)]
    with pytest.raises(ValueError, match="share one architecture"):
        HeadEnsemble([_head(0), _head(1, width=32)], torch.zeros(2, 64), torch.ones(2, 2))
    with pytest.raises(ValueError, match="membership must be"):
        HeadEnsemble(heads, torch.zeros(3, 64), torch.ones(2, 2))
    with pytest.raises(ValueError, match="at least one mapping frame"):
        HeadEnsemble(heads, torch.zeros(2, 64), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


# --------------------------------------------------------------------------- files


def test_ensemble_map_round_trip(tmp_path):
    ensemble, feats = _ensemble()
    path = tmp_path / "ens.pt"
    save_head(ensemble, path, {"ensemble": {"cluster_overlap": 1.3}})
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["ensemble"] == {"cluster_overlap": 1.3, "heads": 3} and meta["head"]["head_channels"] == 24
    raw = torch.load(path, weights_only=True)
    assert is_ensemble_state_dict(raw) and all(v.dtype == torch.float16 for v in raw.values())
    assert list(raw)[0] == "0.max_scale" and "routing.membership" in raw
    loaded = load_map(path)
    assert isinstance(loaded, HeadEnsemble) and len(loaded) == 3 and loaded.metadata["ensemble"]["heads"] == 3
    assert torch.equal(loaded.membership, ensemble.membership)
    assert torch.allclose(loaded.descriptors, ensemble.descriptors, atol=1e-3)
    x = feats[:1]
    for k in range(3):
        assert torch.allclose(loaded(x, cluster=k), ensemble.heads[k].half().float()(x), atol=1e-3)
    ensemble.float()
    with pytest.raises(MapFileError, match="ensemble map of 3 heads"):
        load_head(path)


def test_an_ensemble_of_one_head_is_written_as_a_plain_head(tmp_path):
    single = HeadEnsemble([_head(0)], torch.ones(2, 64), torch.ones(1, 2))
    save_head(single, tmp_path / "one.pt", {"ensemble": {"heads": 1}})
    assert isinstance(load_head(tmp_path / "one.pt"), GlaceHead)
    assert "ensemble" not in json.loads(sidecar_path(tmp_path / "one.pt").read_text())


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("routing.membership"), "lacks \\['routing.membership'\\]"),
    (lambda sd: sd.__setitem__("stray", torch.zeros(1, dtype=torch.float16)), "neither"),
    (lambda sd: [sd.__setitem__(k.replace("1.", "5.", 1), sd.pop(k)) for k in list(sd) if k.startswith("1.")],
     "numbered 0..K-1"),
    (lambda sd: sd.__setitem__("routing.membership", torch.ones(2, 9, dtype=torch.float16)), "membership must be"),
])
def test_damaged_ensemble_files_fail_naming_the_problem(tmp_path, damage, message):
    ensemble, _ = _ensemble()
    sd = ensemble_state_dict(ensemble)
    damage(sd)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(MapFileError, match=message):
        load_map(tmp_path / "bad.pt")


def test_split_ensemble_state_dict_gives_official_head_layouts():
    ensemble, _ = _ensemble(k=2)
    parts, descriptors, membership = split_ensemble_state_dict(ensemble_state_dict(ensemble))
    assert [list(p) for p in parts] == [list(h.state_dict()) for h in ensemble.heads]
    assert descriptors.shape == (9, 64) and membership.shape == (2, 9)


# --------------------------------------------------------------------------- prediction


def test_map_predictor_fast_and_plain_agree_on_an_ensemble():
    from glace_core.encoder import ACEEncoder

    torch.manual_seed(0)
    encoder = ACEEncoder().eval()
    image = torch.randn(1, 1, 48, 64)
    with torch.inference_mode():
        feats = torch.cat([encoder(torch.randn(1, 1, 48, 64)) for _ in range(4)] + [encoder(image)])
    membership = torch.tensor([[1.0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]])
    ensemble = HeadEnsemble([_head(i, mean=(i, 0, 0), channels=512) for i in range(3)], routing_descriptor(feats),
                            membership).eval()
    fast = MapPredictor(encoder, ensemble, fast=True, candidates=2)
    plain = MapPredictor(encoder, ensemble, fast=False, candidates=2)
    a, b = fast(image), plain(image)
    assert [k for k, _ in a] == [k for k, _ in b] and a[0][0] == 2 and len(a) == 2  # the image's own cluster first
    for (_, x), (_, y) in zip(a, b):
        assert x.shape == (1, 3, 6, 8) and torch.allclose(x, y, rtol=1e-4, atol=1e-4)
    assert set(fast.timings) == {"encoder", "head"}
    plain.candidates = 0
    assert sorted(k for k, _ in plain(image)) == [0, 1, 2]
    with pytest.raises(ValueError, match="candidates must be >= 0"):
        MapPredictor(encoder, ensemble, candidates=-1)
