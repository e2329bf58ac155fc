"""Reading and writing rosbag2 files (sqlite3 and mcap) with the `rosbags` library.

No ROS install is needed: message types come from rosbags' ROS 2 Kilted type store, whose
definitions (and so RIHS01 type hashes and CDR bytes) equal the installed ROS 2 Kilted message
packages. Raw CDR bytes read here can be published as-is by an rclpy publisher, and bytes
serialized by `rclpy.serialization` deserialize here.

Every failure to open or read a bag is raised as :class:`BagError` naming the bag and the
problem, instead of a traceback from deep inside the storage plugin.
"""
from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

logger = logging.getLogger(__name__)

STORAGE_FORMATS = ("mcap", "sqlite3")


class BagError(ValueError):
    """A bag that cannot be opened, read or written, with the bag's path in the message."""


@dataclass(frozen=True)
class BagMessage:
    """One message of a bag: raw CDR bytes plus where and when it was recorded."""

    topic: str
    msgtype: str  # e.g. "sensor_msgs/msg/Image"
    timestamp_ns: int  # the bag's receive time
    data: bytes


def typestore():
    """The rosbags type store for ROS 2 Kilted (the distribution of our pip wheels)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGE_FORMATS:
        raise BagError(f"unknown bag storage {storage!r}; valid: {', '.join(STORAGE_FORMATS)}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


class BagWriter:
    """Write messages to a new rosbag2 folder.

    Usage::

        with BagWriter(path, storage="mcap") as bag:
            bag.write("/camera/image_raw", msg, "sensor_msgs/msg/Image", stamp_ns)

    ``msg`` is a rosbags message object (``bag.types[...]``). The bag is written into a
    temporary sibling folder and renamed into place on success, so an interrupted run leaves no
    half-written bag at ``path``.
    """

    def __init__(self, path: str | os.PathLike, storage: str = "mcap", overwrite: bool = False):
        self.path = Path(path)
        self.storage = storage
        self._plugin = _storage_plugin(storage)
        if self.path.exists() and not overwrite:
            raise BagError(f"bag output {self.path} already exists (pass overwrite to replace it)")
        self.overwrite = overwrite
        self.store = typestore()
        self.types = self.store.types
        # written as <parent>/.<name>.partial/<name> so that the storage file inside is named after
        # the final bag (<name>.mcap / <name>.db3), then moved into place
        self._tmp_root = self.path.parent / f".{self.path.name}.partial"
        self._tmp = self._tmp_root / self.path.name
        self._writer = None
        self._connections: dict[str, Any] = {}
        self.count = 0

    def __enter__(self) -> "BagWriter":
        from rosbags.rosbag2 import Writer

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._tmp_root.exists():
            shutil.rmtree(self._tmp_root)
        self._tmp_root.mkdir()
        self._writer = Writer(self._tmp, version=9, storage_plugin=self._plugin)
        self._writer.open()
        return self

    def write(self, topic: str, msg: Any, msgtype: str, timestamp_ns: int) -> None:
        """Serialize ``msg`` (a rosbags message of ``msgtype``) and append it at ``timestamp_ns``."""
        self.write_raw(topic, self.store.serialize_cdr(msg, msgtype), msgtype, timestamp_ns)

    def write_raw(self, topic: str, data: bytes, msgtype: str, timestamp_ns: int) -> None:
        """Append already serialized CDR bytes."""
        assert self._writer is not None, "BagWriter used outside its with-block"
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} already has type {conn.msgtype}, not {msgtype}")
        self._writer.write(conn, int(timestamp_ns), bytes(data))
        self.count += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._writer is not None
        if exc_type is not None:
            try:
                self._writer.close()
            finally:
                shutil.rmtree(self._tmp_root, ignore_errors=True)
            return
        self._writer.close()
        if self.path.exists() and self.overwrite:
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        os.replace(self._tmp, self.path)
        self._tmp_root.rmdir()


class BagReader:
    """Read a rosbag2 (folder with metadata.yaml, or a bare .mcap / .db3 file).

    Raises :class:`BagError` naming the bag when it is missing, truncated or corrupt.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        self.store = typestore()
        self._reader = None

    def __enter__(self) -> "BagReader":
        from rosbags.rosbag2 import Reader

        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # rosbags raises many types for damaged bags
            raise BagError(f"cannot open bag {self.path}: {_describe(exc)}") from exc
        return self

    def __exit__(self, *exc_info) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # closing a damaged bag must not hide the original error
                logger.debug("error while closing bag %s", self.path, exc_info=True)

    @property
    def topics(self) -> dict[str, str]:
        """Topic name → message type of every connection in the bag."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    def require_topics(self, wanted: Iterable[str]) -> None:
        """Raise BagError listing the topics the bag has when one of ``wanted`` is missing."""
        have = self.topics
        missing = [t for t in wanted if t not in have]
        if missing:
            listing = ", ".join(f"{t} ({m})" for t, m in sorted(have.items())) or "none"
            raise BagError(f"bag {self.path} has no topic {', '.join(missing)}; its topics: {listing}")

    def messages(self, topics: Sequence[str] | None = None) -> Iterator[BagMessage]:
        """Yield the bag's messages on ``topics`` (all when None) in timestamp order."""
        conns = [c for c in self._reader.connections if topics is None or c.topic in topics]
        try:
            for conn, timestamp, data in self._reader.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(data))
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"bag {self.path} is damaged while reading: {_describe(exc)}") from exc

    def deserialize(self, message: BagMessage) -> Any:
        """The rosbags message object for ``message``; BagError when its bytes are corrupt."""
        try:
            return self.store.deserialize_cdr(message.data, message.msgtype)
        except Exception as exc:
            raise BagError(
                f"bag {self.path}: cannot decode a {message.msgtype} on {message.topic} "
                f"at t={message.timestamp_ns} ns: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError):
        text = f"sqlite3 database error ({text})"
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def ns_to_rosbags_time(types: Any, ns: int) -> Any:
    """Integer nanoseconds → a *rosbags* builtin_interfaces/msg/Time of the type store ``types``
    (for messages written with :class:`BagWriter`; rclpy messages use
    :func:`glace_ros.stamps.ns_to_time`). Read stamps with :func:`glace_ros.stamps.stamp_to_ns`."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
