"""glace_ros.tf_graph.TfGraph: chained static + dynamic lookups, nearest and interpolated, the cache
bound, rejection of bad transforms, batch lookups from a bag, thread safety."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from scipy.spatial.transform import Rotation
from tf2_msgs.msg import TFMessage

from glace_ros.bag_io import BagError, BagReader, BagWriter
from glace_core.geometry import invert_pose
from glace_ros.pose_messages import map_to_odom, transform_stamped_from_matrix
from glace_ros.tf_graph import TfGraph
from tf_fixtures import expected_map_T_camera, pose, write_tf_bag

S = 1_000_000_000


def _random_pose(rng):
    return pose(Rotation.random(random_state=rng).as_rotvec(), rng.normal(0, 3, 3))


def _ts(parent, child, T, t_s=0.0):
    return transform_stamped_from_matrix(T, t_s, parent, child)


def _line(t_s):
    """A dynamic edge linear in t: x = t, yaw = 0.3 t (lerp and slerp reproduce it exactly)."""
    return pose([0, 0, 0.3 * t_s], [t_s, 0, 0])


def test_chains_static_and_dynamic_edges_for_odom_mode():
    rng = np.random.default_rng(6)
    odom_T_base, base_T_cam, map_T_cam = _random_pose(rng), _random_pose(rng), _random_pose(rng)
    graph = TfGraph()
    assert graph.add_message(TFMessage(transforms=[_ts("base_link", "camera_optical", base_T_cam)]), static=True) == 1
    graph.add_message(TFMessage(transforms=[_ts("odom", "base_link", odom_T_base, 100.0)]))
    odom_T_cam = graph.lookup("odom", "camera_optical", 100.0)
    np.testing.assert_allclose(odom_T_cam, odom_T_base @ base_T_cam, atol=1e-12)
    np.testing.assert_allclose(graph.lookup("camera_optical", "odom"), invert_pose(odom_T_cam), atol=1e-12)
    # odom mode: publish map->odom; the whole chain then reproduces map->camera
    graph.add("map", "odom", 100 * S, map_to_odom(map_T_cam, odom_T_cam), static=False)
    np.testing.assert_allclose(graph.lookup("map", "camera_optical", Time(sec=100)), map_T_cam, atol=1e-12)
    np.testing.assert_array_equal(graph.lookup("odom", "odom"), np.eye(4))
    assert graph.frames == ["base_link", "camera_optical", "map", "odom"]


def test_siblings_meet_at_a_common_ancestor_and_slashes_are_ignored():
    rng = np.random.default_rng(7)
    base_T_a, base_T_b = _random_pose(rng), _random_pose(rng)
    graph = TfGraph()
    graph.add("/base_link", "cam_a", 0, base_T_a, static=True)
    graph.add("base_link", "/cam_b", 0, base_T_b, static=True)
    np.testing.assert_allclose(graph.lookup("cam_a", "/cam_b"), invert_pose(base_T_a) @ base_T_b, atol=1e-12)


def test_parent_of_and_reparenting():
    graph = TfGraph()
    graph.add("odom", "base", 0, np.eye(4))
    graph.add("base", "cam", 0, np.eye(4), static=True)
    assert (graph.parent_of("cam"), graph.parent_of("/base"), graph.parent_of("odom")) == ("base", "odom", None)
    assert graph.parent_of("nowhere") is None
    graph.add("map", "base", 5 * S, _line(1.0))  # a new parent restarts the edge: old samples are gone
    assert graph.parent_of("base") == "map"
    np.testing.assert_allclose(graph.lookup("map", "cam"), _line(1.0), atol=1e-12)
    with pytest.raises(LookupError, match="no TF chain between 'odom' and 'cam'"):
        graph.lookup("odom", "cam")


def test_nearest_and_interpolated_lookups_with_samples_out_of_order():
    graph = TfGraph(cache_time_s=10.0, max_gap_s=1.5)
    graph.add("base", "cam", 0, np.eye(4), static=True)  # stamp 0, queried much later
    for t in (3.0, 1.0, 2.0):  # out of order
        graph.add("odom", "base", int(t * S), _line(t))
    graph.add("odom", "base", 2 * S, _line(2.0))  # the same stamp again replaces, not duplicates
    np.testing.assert_allclose(graph.lookup("odom", "cam", 1.9), _line(1.9), atol=1e-12)
    np.testing.assert_allclose(graph.lookup("odom", "cam", 1.25), _line(1.25), atol=1e-12)
    np.testing.assert_allclose(graph.lookup("odom", "cam", 1.9, interpolate=False), _line(2.0), atol=1e-12)
    np.testing.assert_allclose(graph.lookup("odom", "cam", 1.2, interpolate=False), _line(1.0), atol=1e-12)
    np.testing.assert_allclose(graph.lookup("odom", "cam"), _line(3.0), atol=1e-12)  # no stamp: latest
    np.testing.assert_allclose(graph.lookup("odom", "cam", Time(sec=3, nanosec=400_000_000), interpolate=False),
                               _line(3.0), atol=1e-12)
    # interpolation does not extrapolate; nearest accepts a sample within max_gap_s
    with pytest.raises(LookupError, match=r"'odom' -> 'base' transform at 3.400 s \(have 3 samples, 1.000 .. 3.000 s"):
        graph.lookup("odom", "cam", 3.4)
    with pytest.raises(LookupError, match=r"near 5.000 s .*1.000 .. 3.000 s; max gap 1.500 s"):
        graph.lookup("odom", "cam", 5.0, interpolate=False)


def test_gaps_and_extrapolation_limits():
    graph = TfGraph(max_gap_s=0.5, max_extrapolation_s=0.2)
    for t in (0.0, 0.4, 2.0):  # 0.4 -> 2.0 is a gap longer than max_gap_s
        graph.add("odom", "base", int(t * S), _line(t))
    query = (np.array([0.2, 1.0, -0.1, -0.3, 2.15, 2.3]) * S).astype(np.int64)
    poses, ok = graph.lookup_many("odom", "base", query)
    assert ok.tolist() == [True, False, True, False, True, False]
    np.testing.assert_allclose(poses[0], _line(0.2), atol=1e-12)
    np.testing.assert_allclose(poses[2], _line(0.0), atol=1e-12)  # held, not extrapolated
    np.testing.assert_allclose(poses[4], _line(2.0), atol=1e-12)
    assert np.isnan(poses[~ok]).all()
    _, ok = graph.lookup_many("odom", "base", (np.array([0.9, 1.2]) * S).astype(np.int64), interpolate=False)
    assert ok.tolist() == [True, False]  # nearest: 0.5 s from the 0.4 s sample, then 0.8 s
    # a per-lookup extrapolation limit overrides the graph's
    np.testing.assert_allclose(graph.lookup("odom", "base", 2.3, max_extrapolation_s=0.5), _line(2.0), atol=1e-12)
    with pytest.raises(LookupError, match=r"at 2.800 s .*extrapolation 0.500 s"):
        graph.lookup("odom", "base", 2.8, max_extrapolation_s=0.5)
    _, ok = graph.lookup_many("odom", "base", query, max_extrapolation_s=0.0)
    assert ok.tolist() == [True, False, False, False, False, False]


def test_dynamic_edges_keep_only_the_cache_window_and_static_never_expires():
    graph = TfGraph(cache_time_s=1.0, max_gap_s=0.5)
    graph.add("base", "cam", 0, np.eye(4), static=True)
    for k in range(1000):  # 10 s at 100 Hz
        graph.add("odom", "base", k * 10_000_000, _line(k * 0.01))
    edge = graph._edges["base"]
    assert len(edge.stamps) == 101 and edge.stamps[0] == 8_990_000_000
    with pytest.raises(LookupError, match=r"have 101 samples, 8.990 .. 9.990 s"):
        graph.lookup("odom", "base", 5.0)
    np.testing.assert_allclose(graph.lookup("odom", "cam", 9.5), _line(9.5), atol=1e-9)
    np.testing.assert_array_equal(graph.lookup("base", "cam", 1000.0), np.eye(4))
    # a sample older than the window (time jumped back: a looped bag) restarts the edge
    graph.add("odom", "base", 0, _line(0.0))
    assert graph._edges["base"].stamps == [0]
    np.testing.assert_allclose(graph.lookup("odom", "cam", 0.0), _line(0.0), atol=1e-12)


@pytest.mark.parametrize("matrix,match", [
    (np.full((4, 4), np.nan), "NaN or infinite"),
    (np.diag([2.0, 1.0, 1.0, 1.0]), "not orthonormal"),
    (np.diag([-1.0, 1.0, 1.0, 1.0]), "determinant"),
    (np.eye(3), "shape"),
])
def test_bad_transforms_are_rejected_and_do_not_poison_lookups(matrix, match):
    graph = TfGraph()
    graph.add("odom", "base", S, _line(1.0))
    with pytest.raises(ValueError, match=f"transform odom -> base.*{match}"):
        graph.add("odom", "base", 2 * S, matrix)
    np.testing.assert_allclose(graph.lookup("odom", "base"), _line(1.0), atol=1e-12)
    assert len(graph._edges["base"].stamps) == 1


def test_bad_frames_cycles_and_messages_are_rejected():
    graph = TfGraph()
    with pytest.raises(ValueError, match="distinct non-empty frames"):
        graph.add("a", "/a", 0, np.eye(4))
    with pytest.raises(ValueError, match="distinct non-empty frames"):
        graph.add("", "a", 0, np.eye(4))
    graph.add("map", "odom", 0, np.eye(4))
    graph.add("odom", "base", 0, np.eye(4))
    with pytest.raises(ValueError, match="would close a cycle"):
        graph.add("base", "map", 0, np.eye(4))
    assert graph.parent_of("map") is None
    # a TFMessage with one bad transform: the good ones are added, the bad one is named
    bad = _ts("base", "cam_b", np.eye(4))
    bad.transform.rotation.w = 0.0  # zero quaternion
    msg = TFMessage(transforms=[_ts("base", "cam_a", np.eye(4)), bad, _ts("base", "cam_c", np.eye(4))])
    with pytest.raises(ValueError, match=r"rejected 1 of 3 transforms: 'base' -> 'cam_b'.*zero or non-finite norm"):
        graph.add_message(msg, static=True)
    assert graph.parent_of("cam_a") == graph.parent_of("cam_c") == "base" and graph.parent_of("cam_b") is None


def test_unconnected_frames_are_named():
    graph = TfGraph()
    graph.add("odom", "base", 0, np.eye(4))
    graph.add("map", "other", 0, np.eye(4), static=True)
    with pytest.raises(LookupError, match=r"no TF chain between 'odom' and 'camera' \(unknown: \['camera'\]\); "
                                          r"known frames: \['base', 'map', 'odom', 'other'\]"):
        graph.lookup("odom", "camera")
    with pytest.raises(LookupError, match="no TF chain between 'base' and 'other'"):
        graph.lookup_many("base", "other", np.zeros(3, np.int64))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_from_bag_batch_lookups_interpolate_chains(tmp_path, storage):
    base_cam = write_tf_bag(tmp_path / "bag", storage)
    with BagReader(tmp_path / "bag") as bag:
        graph = TfGraph.from_bag(bag, max_gap_s=1.5)
    query = np.array([0, 250_000_000, 1_530_000_000, 2_000_000_000, 2_000_000_001, -1])
    poses, ok = graph.lookup_many("map", "camera_optical", query)
    assert poses.shape == (6, 4, 4) and ok.tolist() == [True, True, True, True, False, False]
    for q, T in zip(query[:4], poses[:4]):
        np.testing.assert_allclose(T, expected_map_T_camera(q / S, base_cam), atol=1e-9)
    assert np.isnan(poses[4:]).all()
    # the inverse direction, a chain that meets below the root, and the scalar lookup agree
    inv, _ = graph.lookup_many("camera_optical", "map", query[:2])
    np.testing.assert_allclose(inv[1] @ poses[1], np.eye(4), atol=1e-9)
    odom_cam, _ = graph.lookup_many("odom", "camera_optical", query[1:2])
    np.testing.assert_allclose(odom_cam[0], pose([0, 0, 0.125], [0.25, 0.05, 0]) @ base_cam, atol=1e-9)
    np.testing.assert_allclose(graph.lookup("map", "camera_optical", 1.53), poses[2], atol=1e-12)
    with pytest.raises(LookupError, match="no TF chain.*known frames"):
        graph.lookup_many("map", "nowhere", query)
    # a gap longer than max_gap_s is not bridged (map->odom samples are 1 s apart)
    with BagReader(tmp_path / "bag") as bag:
        strict = TfGraph.from_bag(bag, max_gap_s=0.5)
    _, ok = strict.lookup_many("map", "camera_optical", np.array([1_000_000_000, 1_500_000_000]))
    assert ok.tolist() == [True, False]


def test_from_bag_without_tf_names_the_topics(tmp_path):
    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/other", bag.types["std_msgs/msg/String"](data="x"), "std_msgs/msg/String", 1)
    with BagReader(tmp_path / "bag") as bag, pytest.raises(BagError, match=r"no topic /tf; its topics: /other"):
        TfGraph.from_bag(bag)


def test_one_writer_one_reader_never_see_a_torn_or_failed_lookup():
    """A writer feeds 100 Hz samples (and prunes the cache) while a reader looks up the latest,
    interpolated and batch transforms: every answer is one of the consistent poses x = t, yaw = 0.3 t."""
    graph = TfGraph(cache_time_s=0.5, max_gap_s=0.05)
    graph.add("base", "cam", 0, np.eye(4), static=True)
    graph.add("odom", "base", 0, _line(0.0))
    stop, errors, checked = threading.Event(), [], [0]

    def write():
        for k in range(1, 3000):
            graph.add("odom", "base", k * 10_000_000, _line(k * 0.01))
        stop.set()

    def read():
        while not stop.is_set():
            try:
                latest = graph.lookup("odom", "cam")
                t = latest[0, 3]
                np.testing.assert_allclose(latest, _line(t), atol=1e-9)
                stamps = np.array([max(t - 0.105, 0.0), t - 0.0049]) * S
                poses, ok = graph.lookup_many("odom", "cam", stamps.astype(np.int64))
                for T in poses[ok]:
                    np.testing.assert_allclose(T, _line(T[0, 3]), atol=1e-9)
                checked[0] += 1
            except Exception as exc:  # noqa: BLE001  collected for the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors[0]
    assert checked[0] > 0
    assert len(graph._edges["base"].stamps) <= 51  # 0.5 s at 100 Hz, plus the newest
