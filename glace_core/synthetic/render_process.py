"""The GL renderer in a child process.

Mesa's llvmpipe loads its own LLVM into the process that creates an EGL context, and torch's
bundled Triton (imported lazily, e.g. by ``torch.optim``) loads another: with both in one process
the second import crashes (segmentation fault). So the GL context never lives in the caller's
process: ``GLProcessRenderer`` starts a spawned child that owns the ``GLRenderer`` and exchanges
poses and images over a pipe. Setting ``GLACE_SYNTHETIC_NO_GL=1`` makes the child report GL as
unavailable (to force or test the PyTorch fallback).
"""
from __future__ import annotations

import multiprocessing as mp
import os

import numpy as np

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.render_gl import GLUnavailable
from glace_core.synthetic.room import Room

NO_GL_ENV = "GLACE_SYNTHETIC_NO_GL"
_START_TIMEOUT_S = 120.0


def _child(conn, room: Room, camera: Camera) -> None:
    """Child process: build the GL renderer, then answer poses until None arrives."""
    try:
        if os.environ.get(NO_GL_ENV, "") not in ("", "0"):
            raise GLUnavailable(f"GL disabled by {NO_GL_ENV}={os.environ[NO_GL_ENV]}")
        from glace_core.synthetic.render_gl import GLRenderer

        renderer = GLRenderer(room, camera)
    except GLUnavailable as exc:
        conn.send(("unavailable", str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - any start-up failure is reported, not raised in the child
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ok", ""))
    try:
        while True:
            pose = conn.recv()
            if pose is None:
                break
            try:
                conn.send(("ok", renderer.render(pose)))
            except Exception as exc:  # noqa: BLE001 - sent back and raised in the parent
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        renderer.close()


class GLProcessRenderer:
    """``render(pose) -> (rgb (H, W, 3) uint8, depth (H, W) float32 m)`` by a GLRenderer in a child
    process. Raises GLUnavailable (with the child's reason) when no GL context can be made there."""

    backend = "gl"

    def __init__(self, room: Room, camera: Camera):
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child_conn, room, camera), daemon=True,
                                 name="glace-gl-renderer")
        self._proc.start()
        child_conn.close()
        status, message = self._receive(_START_TIMEOUT_S, "starting")
        if status == "unavailable":
            self.close()
            raise GLUnavailable(message)
        if status != "ok":
            self.close()
            raise RuntimeError(f"the GL renderer process failed to start: {message}")

    def _receive(self, timeout: float, what: str):
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the GL renderer process did not answer within {timeout:.0f} s ({what})")
        try:
            return self._conn.recv()
        except EOFError as exc:
            raise GLUnavailable(f"the GL renderer process died while {what} "
                                f"(exit code {self._proc.exitcode})") from exc

    def render(self, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cam_to_world (4, 4) OpenCV axes → rgb (H, W, 3) uint8, depth (H, W) float32 metres."""
        pose = np.asarray(cam_to_world, np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"cam_to_world must be (4, 4), got {pose.shape}")
        self._conn.send(pose)
        status, payload = self._receive(_START_TIMEOUT_S, "rendering")
        if status != "ok":
            raise RuntimeError(f"GL rendering failed: {payload}")
        return payload

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            if self._proc.is_alive():
                self._conn.send(None)
            self._proc.join(timeout=10)
        except (BrokenPipeError, OSError):
            pass
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
        self._proc = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def gl_available(room: Room | None = None) -> tuple[bool, str]:
    """Whether a GL context can be made (checked in a child process) and, if not, why."""
    from glace_core.synthetic.room import build_room

    try:
        GLProcessRenderer(room or build_room(0, texels_per_m=20), Camera.default(16, 16)).close()
        return True, ""
    except GLUnavailable as exc:
        return False, str(exc)
