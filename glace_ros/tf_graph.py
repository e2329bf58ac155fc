"""The TF graph: transforms heard on /tf and /tf_static (live node) or read from a bag, for chained lookups.

tf2_ros does not install from pip, so this is the project's one TF tree. Each child frame has one
parent (a tree, as in tf2); an edge is static (one transform, valid at all times) or dynamic (timed
samples). A lookup of target_T_source walks both frames up to their common ancestor and composes
the edges, each taken at the query stamp either

- interpolated (default): lerp of the translation and slerp of the rotation between the two
  samples around the stamp (:class:`glace_core.pose_interpolation.PoseTrajectory`), which must be at
  most ``max_gap_s`` apart; a stamp outside an edge's samples is answered only within
  ``max_extrapolation_s`` of the first/last sample, which is then held (never extrapolated), or
- nearest (``interpolate=False``): the sample nearest the stamp, which must be within ``max_gap_s``.

A stamp of None means the latest sample of every edge. Dynamic edges keep the samples of the last
``cache_time_s`` seconds (by stamp; None keeps all, as for a bag), so the live graph's memory is
bounded. A sample older than that window (time jumped back, e.g. a looped bag) restarts its edge.

Transforms are validated on the way in (finite, rotation block orthonormal with det +1, no cycle):
a bad TF message raises ValueError and never reaches a lookup. All methods are thread-safe.
"""
from __future__ import annotations

import bisect
import logging
import math
import threading
from typing import Any

import numpy as np

from glace_core.geometry import invert_pose, validate_pose
from glace_core.pose_interpolation import PoseTrajectory
from glace_ros.pose_messages import transform_to_matrix
from glace_ros.stamps import NS_PER_S, stamp_to_ns

__all__ = ["TF_TOPICS", "TfGraph"]

logger = logging.getLogger(__name__)

TF_TOPICS = ("/tf", "/tf_static")


def _name(frame: Any) -> str:
    return str(frame).strip().lstrip("/")


def _seconds_to_ns(value: float | None, name: str, allow_zero: bool) -> int | None:
    if value is None:
        return None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'} (or None), got {value}")
    return int(round(value * NS_PER_S))


class _Edge:
    """The parent_T_child samples of one child frame, sorted by stamp; lookups cache their arrays."""

    def __init__(self, parent: str, static: bool):
        self.parent, self.static = parent, static
        self.stamps: list[int] = []
        self.mats: list[np.ndarray] = []
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._trajectory: PoseTrajectory | None = None

    def insert(self, stamp: int, T: np.ndarray, cache_ns: int | None) -> bool:
        """Add a sample (replacing one at the same stamp); False when it restarted the edge."""
        self._arrays = self._trajectory = None
        if self.static:
            self.stamps, self.mats = [stamp], [T]
            return True
        if cache_ns is not None and self.stamps and stamp < self.stamps[-1] - cache_ns:
            self.stamps, self.mats = [stamp], [T]
            return False
        j = bisect.bisect_left(self.stamps, stamp)
        if j < len(self.stamps) and self.stamps[j] == stamp:
            self.mats[j] = T
        else:
            self.stamps.insert(j, stamp)
            self.mats.insert(j, T)
        if cache_ns is not None:
            drop = bisect.bisect_left(self.stamps, self.stamps[-1] - cache_ns)
            del self.stamps[:drop], self.mats[:drop]
        return True

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(M,) int64 stamps and (M, 4, 4) float64 transforms."""
        if self._arrays is None:
            self._arrays = np.array(self.stamps, np.int64), np.stack(self.mats)
        return self._arrays

    def at(self, query: np.ndarray | None, interpolate: bool, max_gap_ns: int | None,
           extrapolation_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """parent_T_child at the (Q,) int64 ``query`` stamps (None: the latest, Q = 1): (Q, 4, 4)
        float64 (NaN where none) and a (Q,) bool validity mask."""
        stamps, mats = self.arrays()
        if self.static or query is None:
            n = 1 if query is None else query.size
            return np.broadcast_to(mats[-1], (n, 4, 4)), np.ones(n, bool)
        if interpolate:
            if self._trajectory is None:
                self._trajectory = PoseTrajectory(stamps, mats, max_gap_ns)
            out, ok = self._trajectory.at(query)
            for end, outside in ((0, query < stamps[0]), (-1, query > stamps[-1])):
                hold = ~ok & outside & (np.abs(query - stamps[end]) <= extrapolation_ns)
                out[hold], ok[hold] = mats[end], True
            return out, ok
        j = np.searchsorted(stamps, query)
        lo, hi = np.clip(j - 1, 0, stamps.size - 1), np.clip(j, 0, stamps.size - 1)
        best = np.where(np.abs(query - stamps[lo]) <= np.abs(stamps[hi] - query), lo, hi)
        ok = np.ones(query.size, bool) if max_gap_ns is None else np.abs(stamps[best] - query) <= max_gap_ns
        out = mats[best]
        out[~ok] = np.nan
        return out, ok


class TfGraph:
    """The transforms of a TF tree, answering chained lookups (see the module docstring).

    Args:
        cache_time_s: seconds of samples a dynamic edge keeps, counted back from its newest stamp
            (None: keep every sample).
        max_gap_s: interpolation bridges samples at most this far apart; a nearest lookup accepts
            a sample at most this far from the stamp (None: no limit).
        max_extrapolation_s: how far before the first / after the last sample of an edge an
            interpolated lookup still answers, holding that sample.
    """

    def __init__(self, cache_time_s: float | None = 10.0, max_gap_s: float | None = 0.5,
                 max_extrapolation_s: float = 0.0):
        self.cache_ns = _seconds_to_ns(cache_time_s, "cache_time_s", allow_zero=False)
        self.max_gap_ns = _seconds_to_ns(max_gap_s, "max_gap_s", allow_zero=True)
        self.extrapolation_ns = _seconds_to_ns(max_extrapolation_s, "max_extrapolation_s", allow_zero=True)
        self._edges: dict[str, _Edge] = {}  # child frame -> its edge from the parent
        self._reparented: set[str] = set()  # children whose change of parent was logged (once each)
        self._lock = threading.Lock()

    @classmethod
    def from_bag(cls, bag: Any, max_gap_s: float | None = None, max_extrapolation_s: float = 0.0) -> "TfGraph":
        """Every transform of an open :class:`glace_ros.bag_io.BagReader`'s /tf and /tf_static,
        with no cache limit. Raises BagError when the bag has neither topic; transforms that fail
        validation are skipped and counted in a warning."""
        topics = [t for t in TF_TOPICS if t in bag.topics]
        if not topics:
            bag.require_topics(["/tf"])
        graph = cls(cache_time_s=None, max_gap_s=max_gap_s, max_extrapolation_s=max_extrapolation_s)
        rejected = []
        for m in bag.messages(topics):
            try:
                graph.add_message(bag.deserialize(m), static=m.topic == "/tf_static")
            except ValueError as exc:
                rejected.append(str(exc))
        if rejected:
            logger.warning("bag %s: skipped bad TF in %d message(s); first: %s", bag.path, len(rejected), rejected[0])
        return graph

    # ------------------------------------------------------------------ writing

    def add(self, parent: str, child: str, stamp_ns: Any, parent_T_child: np.ndarray, static: bool = False) -> None:
        """Add one (4, 4) parent_T_child sample at ``stamp_ns`` (int ns, or any stamp
        :func:`glace_ros.stamps.stamp_to_ns` reads). A static sample replaces the edge; a new parent
        or a change between static and dynamic restarts it.

        Raises ValueError naming the frames when a frame name is empty, parent equals child, the
        matrix is not a finite rigid transform, or the edge would close a cycle.
        """
        parent, child = _name(parent), _name(child)
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs distinct non-empty frames, got parent {parent!r}, child {child!r}")
        T = validate_pose(parent_T_child, f"transform {parent} -> {child}")
        stamp = stamp_to_ns(stamp_ns)
        with self._lock:
            frame = parent
            while frame in self._edges:
                frame = self._edges[frame].parent
                if frame == child:
                    raise ValueError(f"transform {parent} -> {child} would close a cycle: {child!r} is already "
                                     f"an ancestor of {parent!r}")
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                if edge is not None and edge.parent != parent and child not in self._reparented:
                    self._reparented.add(child)
                    logger.warning("TF frame %r changes parent from %r to %r (logged once)", child, edge.parent, parent)
                edge = self._edges[child] = _Edge(parent, static)
            if not edge.insert(stamp, T, self.cache_ns):
                logger.warning("TF %s -> %s: stamp %.3f s is older than the %.1f s cache (time jumped back); "
                               "restarting the edge", parent, child, stamp / NS_PER_S, self.cache_ns / NS_PER_S)

    def add_message(self, msg: Any, static: bool = False) -> int:
        """Add every transform of a tf2_msgs/TFMessage (rclpy or rosbags; ``static`` for /tf_static).

        Returns how many were added. The valid transforms are added even when others are not;
        those then raise one ValueError naming each rejected one.
        """
        added, errors = 0, []
        for ts in msg.transforms:
            try:
                self.add(ts.header.frame_id, ts.child_frame_id, stamp_to_ns(ts.header.stamp),
                         transform_to_matrix(ts.transform), static)
                added += 1
            except (ValueError, TypeError) as exc:
                errors.append(f"{ts.header.frame_id!r} -> {ts.child_frame_id!r}: {exc}")
        if errors:
            raise ValueError(f"rejected {len(errors)} of {len(msg.transforms)} transforms: {'; '.join(errors)}")
        return added

    # ------------------------------------------------------------------ reading

    @property
    def frames(self) -> list[str]:
        """Every frame named by a transform, sorted."""
        with self._lock:
            return sorted(set(self._edges) | {e.parent for e in self._edges.values()})

    def parent_of(self, frame: str) -> str | None:
        """The parent of ``frame``, or None when it is a root or unknown."""
        with self._lock:
            edge = self._edges.get(_name(frame))
            return None if edge is None else edge.parent

    def lookup(self, target: str, source: str, stamp: Any = None, *, interpolate: bool = True,
               max_extrapolation_s: float | None = None) -> np.ndarray:
        """target_T_source (4, 4) float64 at ``stamp`` (Time, int ns, float s; None = latest): maps
        points in ``source`` into ``target`` (tf2's lookupTransform). ``max_extrapolation_s``
        overrides the graph's for this lookup.

        Raises LookupError naming the frames when they are not connected, or naming the edge and
        its time range when an edge has no transform at ``stamp``.
        """
        t = None if stamp is None else stamp_to_ns(stamp)
        query = None if t is None else np.array([t], np.int64)
        extrapolation_ns = self._extrapolation_ns(max_extrapolation_s)
        with self._lock:
            out, ok, failed = self._resolve(_name(target), _name(source), query, interpolate, extrapolation_ns)
            if not ok[0]:
                edge = self._edges[failed]
                stamps = edge.stamps
                gap = "none" if self.max_gap_ns is None else f"{self.max_gap_ns / NS_PER_S:.3f} s"
                raise LookupError(
                    f"cannot look up {target!r} <- {source!r}: no {edge.parent!r} -> {failed!r} transform "
                    f"{'at' if interpolate else 'near'} {t / NS_PER_S:.3f} s (have {len(stamps)} samples, "
                    f"{stamps[0] / NS_PER_S:.3f} .. {stamps[-1] / NS_PER_S:.3f} s; max gap {gap}, "
                    f"extrapolation {extrapolation_ns / NS_PER_S:.3f} s)")
        return out[0].copy()

    def lookup_many(self, target: str, source: str, stamps_ns: np.ndarray, *, interpolate: bool = True,
                    max_extrapolation_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """target_T_source at each of the (Q,) int64 ``stamps_ns``: (Q, 4, 4) float64 (NaN where an
        edge has no transform) and a (Q,) bool validity mask. For target = map and source = a camera
        optical frame these are camera-to-world poses. ``max_extrapolation_s`` overrides the graph's.

        Raises LookupError naming the known frames when the two frames are not connected.
        """
        query = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
        extrapolation_ns = self._extrapolation_ns(max_extrapolation_s)
        with self._lock:
            out, ok, _ = self._resolve(_name(target), _name(source), query, interpolate, extrapolation_ns)
        return out, ok

    def _extrapolation_ns(self, max_extrapolation_s: float | None) -> int:
        if max_extrapolation_s is None:
            return self.extrapolation_ns
        return _seconds_to_ns(max_extrapolation_s, "max_extrapolation_s", allow_zero=True)

    def _path_to_root(self, frame: str) -> list[str]:
        path = [frame]
        while path[-1] in self._edges:  # add() keeps the graph acyclic
            path.append(self._edges[path[-1]].parent)
        return path

    def _resolve(self, target: str, source: str, query: np.ndarray | None, interpolate: bool,
                 extrapolation_ns: int) -> tuple[np.ndarray, np.ndarray, str | None]:
        """(Q, 4, 4) target_T_source (NaN where invalid), (Q,) bool valid, and the child frame of
        the first edge found without a transform (None when all are valid). Q = 1 for None."""
        n = 1 if query is None else query.size
        if target == source:
            return np.tile(np.eye(4), (n, 1, 1)), np.ones(n, bool), None
        up_s, up_t = self._path_to_root(source), self._path_to_root(target)
        in_target = set(up_t)
        common = next((f for f in up_s if f in in_target), None)
        if common is None:
            known = sorted(set(self._edges) | {e.parent for e in self._edges.values()})
            unknown = [f for f in (target, source) if f not in known]
            raise LookupError(f"no TF chain between {target!r} and {source!r}"
                              f"{f' (unknown: {unknown})' if unknown else ''}; known frames: {known}")
        valid = np.ones(n, bool)
        failed = None

        def chain(path: list[str]) -> np.ndarray:  # common_T_path[0]
            nonlocal failed
            T = np.broadcast_to(np.eye(4), (n, 4, 4))
            for child in path[: path.index(common)]:
                edge_T, ok = self._edges[child].at(query, interpolate, self.max_gap_ns, extrapolation_ns)
                if failed is None and not ok.all():
                    failed = child
                valid[:] &= ok
                T = edge_T @ T
            return T

        common_T_source, common_T_target = chain(up_s), chain(up_t)
        out = invert_pose(common_T_target) @ common_T_source
        out[~valid] = np.nan
        return out, valid, failed
