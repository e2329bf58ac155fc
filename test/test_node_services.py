"""The managed relocalizer, ~/localize, on-demand mode, run-time map swaps and hostile inputs (live graph)."""
from __future__ import annotations

import os
import shutil
import struct
import time
import zlib

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from glace_core.map_files import sidecar_path
from glace_ros.image_conversion import numpy_to_image
from glace_ros.relocalizer_lifecycle import RelocalizerLifecycleNode

from relocalizer_graph import RelocalizerGraph

pytestmark = pytest.mark.ros

_count = iter(range(10_000))


@pytest.fixture
def make_graph(context, tiny_scene):
    made = []

    def make(node_class=None, compressed=False, **params):
        ns = f"svc{os.getpid()}_{next(_count)}"
        base = {"map_path": str(tiny_scene.map_path), "encoder_path": tiny_scene.encoder,
                "image_resolution": tiny_scene.resolution, "min_inlier_count": tiny_scene.min_inliers}
        kw = {} if node_class is None else {"node_class": node_class}
        if compressed:
            base["use_compressed"] = True
        g = RelocalizerGraph(context, ns, {**base, **params}, compressed=compressed, **kw)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


def _call(g, srv_type, name, request, timeout=60.0):
    client = g.tester.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=10.0), f"no service {name}"
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.done(), f"{name} did not answer within {timeout} s"
    g.tester.destroy_client(client)
    return future.result()


def _frame_msg(frame):
    return numpy_to_image(frame.rgb, "rgb8")


def _publish(g, frame, stamp):
    g.publish_frame(_frame_msg(frame), frame.K, *frame.rgb.shape[:2], stamp)


def test_lifecycle_transitions_gate_the_poses(make_graph, tiny_scene):
    g = make_graph(node_class=RelocalizerLifecycleNode)
    node_path = f"/{g.ns}/{g.node.get_name()}"
    frame = tiny_scene.frames[tiny_scene.good_frame]

    def state():
        return _call(g, GetState, f"{node_path}/get_state", GetState.Request()).current_state.id

    def change(transition):
        return _call(g, ChangeState, f"{node_path}/change_state",
                     ChangeState.Request(transition=Transition(id=transition))).success

    assert state() == State.PRIMARY_STATE_UNCONFIGURED and g.node.localizer is None
    assert change(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE
    assert g.node.localizer is not None and g.node.pose_pub is None
    assert change(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
    assert g.wait_matched()
    assert g.localize_lockstep(_frame_msg(frame), frame.K, *frame.rgb.shape[:2], 10 ** 9) is not None
    assert change(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
    _publish(g, frame, 2 * 10 ** 9)
    time.sleep(1.5)
    assert 2 * 10 ** 9 not in g.poses and g.node.pose_pub is None
    assert change(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
    assert g.node.localizer is None
    # a map that fails to load leaves the node unconfigured, with the reason in its log
    assert g.node.set_parameters([Parameter("map_path", value="/no/such/map.pt")])[0].successful
    assert not change(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_UNCONFIGURED


def test_localize_service_in_on_demand_mode(make_graph, tiny_scene):
    from tf2_msgs.msg import TFMessage

    from glace_ros.pose_messages import transform_stamped_from_matrix

    g = make_graph(on_demand=True, localize_timeout=20.0)
    assert g.wait_matched()
    g.tf_static_pub.publish(TFMessage(transforms=[
        transform_stamped_from_matrix(np.eye(4), 0, "base_link", "camera_optical_frame")]))
    frame = tiny_scene.frames[tiny_scene.good_frame]
    _publish(g, frame, 10 ** 9)
    time.sleep(1.5)
    assert not g.poses, "on_demand: no pose without a request"
    client = g.tester.create_client(Trigger, f"/{g.ns}/{g.node.get_name()}/localize")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(Trigger.Request())
    time.sleep(0.5)
    _publish(g, frame, 2 * 10 ** 9)
    deadline = time.monotonic() + 60
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    answer = future.result()
    assert answer.success and "localized" in answer.message, answer
    assert list(g.poses) == [2 * 10 ** 9]
    assert g.wait_for(lambda: len(g.initialposes) == 1, 5.0), "a ~/localize request publishes /initialpose"
    _publish(g, frame, 3 * 10 ** 9)
    time.sleep(1.5)
    assert 3 * 10 ** 9 not in g.poses, "back to idle after the request"


def test_localize_times_out_without_images(make_graph):
    g = make_graph(localize_timeout=1.0)
    assert g.wait_matched()
    t0 = time.monotonic()
    answer = _call(g, Trigger, f"/{g.ns}/{g.node.get_name()}/localize", Trigger.Request())
    assert not answer.success and "localize_timeout" in answer.message
    assert time.monotonic() - t0 < 15.0


def test_run_time_map_swap(make_graph, tiny_scene, tmp_path):
    g = make_graph()
    assert g.wait_matched()
    frame = tiny_scene.frames[tiny_scene.good_frame]
    result = g.node.set_parameters([Parameter("map_path", value=str(tmp_path / "missing.pt"))])[0]
    assert not result.successful and "current map is kept" in result.reason
    assert g.node.params.map_path == str(tiny_scene.map_path)
    assert g.localize_lockstep(_frame_msg(frame), frame.K, *frame.rgb.shape[:2], 10 ** 9) is not None
    other = tmp_path / "floor2.pt"
    shutil.copy(tiny_scene.map_path, other)
    shutil.copy(sidecar_path(tiny_scene.map_path), sidecar_path(other))
    assert g.node.set_parameters([Parameter("map_path", value=str(other))])[0].successful
    assert g.node.params.map_path == str(other)
    pose = g.localize_lockstep(_frame_msg(frame), frame.K, *frame.rgb.shape[:2], 2 * 10 ** 9)
    assert pose is not None
    assert g.wait_for(lambda: g.diagnostics_count > 0 and "floor2" in str(g.node.params.map_path), 5.0)


def _rss_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR that declare ``width`` x ``height``, followed by a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(  # noqa: E731
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 400_000)) + \
        chunk(b"IEND", b"")


def test_small_hostile_messages_are_refused_within_the_memory_bound(make_graph, tiny_scene):
    """The three resource-exhaustion cases, each many times, and a good frame after them; peak RSS
    stays within 1.5x the steady state."""
    raw = make_graph()
    packed = make_graph(compressed=True)
    assert raw.wait_matched() and packed.wait_matched()
    frame = tiny_scene.frames[tiny_scene.good_frame]
    h, w = frame.rgb.shape[:2]
    for i in range(3):  # steady state: a few real frames through both
        assert raw.localize_lockstep(_frame_msg(frame), frame.K, h, w, (i + 1) * 10 ** 8) is not None
    steady = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM)
    strip = Image(height=8, width=1600, encoding="mono8", step=1600, data=bytes(8 * 1600))
    strip_K = np.array([[800.0, 0, 800], [0, 800.0, 4], [0, 0, 1]])
    bomb = CompressedImage(format="png", data=_png_declaring(20000, 20000))
    tiny_f = frame.K.copy()
    tiny_f[0, 0] = tiny_f[1, 1] = 1e-300
    stamp = 10 ** 9
    for i in range(334):
        stamp += 10 ** 6
        raw.publish_frame(strip, strip_K, 8, 1600, stamp, frame_id="strip")
        packed.publish_frame(bomb, frame.K, 20000, 20000, stamp, frame_id="bomb")
        raw.publish_frame(_frame_msg(frame), tiny_f, h, w, stamp + 1, frame_id="tiny_focal")
        time.sleep(0.003)
    for g in (raw, packed):
        assert g.wait_for(lambda g=g: g.node._worker.idle(), 120.0)
        assert g.spinning() and g.node._worker.alive()
    reasons = {**raw.node.stats.reasons, **{f"compressed_{k}": v for k, v in packed.node.stats.reasons.items()}}
    assert "max_input_pixels" in reasons.get("input", "") or "max_input_pixels" in str(reasons), reasons
    assert "20000x20000" in reasons.get("compressed_image", ""), reasons
    assert any("fx = 1e-300" in v for v in reasons.values()), reasons
    peak = _rss_kb("VmHWM")
    assert peak <= 1.5 * steady, f"peak RSS {peak / 1024:.0f} MiB > 1.5 x steady {steady / 1024:.0f} MiB"
    t0 = time.monotonic()
    assert raw.localize_lockstep(_frame_msg(frame), frame.K, h, w, 50 * 10 ** 9) is not None
    assert time.monotonic() - t0 < 60.0
