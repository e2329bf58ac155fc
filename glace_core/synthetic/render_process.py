"""The GL renderer in a child process.

Mesa's llvmpipe loads its own LLVM into the process that creates an EGL context, and torch's
bundled Triton (imported lazily, e.g. by ``torch.optim``) loads another: with both in one process
the second import crashes (segmentation fault). So the GL context never lives in the caller's
process: ``GLProcessRenderer`` starts ``python -m glace_core.synthetic.render_process`` (a plain
subprocess, not multiprocessing, so a caller's script without a ``__main__`` guard is not re-run),
which owns the ``GLRenderer`` and exchanges pickled poses and images over its stdin/stdout. Setting
``GLACE_SYNTHETIC_NO_GL=1`` makes the child report GL as unavailable (to force or test the PyTorch
fallback).
"""
from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading

import numpy as np

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.render_gl import GLUnavailable
from glace_core.synthetic.room import Room

NO_GL_ENV = "GLACE_SYNTHETIC_NO_GL"
_TIMEOUT_S = 120.0


def _serve(inp, out) -> None:
    """Child process: read (room, camera), build the GL renderer, then answer poses until None."""
    room, camera = pickle.load(inp)
    try:
        if os.environ.get(NO_GL_ENV, "") not in ("", "0"):
            raise GLUnavailable(f"GL disabled by {NO_GL_ENV}={os.environ[NO_GL_ENV]}")
        from glace_core.synthetic.render_gl import GLRenderer

        renderer = GLRenderer(room, camera)
    except GLUnavailable as exc:
        pickle.dump(("unavailable", str(exc)), out)
        out.flush()
        return
    except Exception as exc:  # noqa: BLE001 - any start-up failure is reported, not raised in the child
        pickle.dump(("error", f"{type(exc).__name__}: {exc}"), out)
        out.flush()
        return
    pickle.dump(("ok", ""), out)
    out.flush()
    try:
        while True:
            pose = pickle.load(inp)
            if pose is None:
                break
            try:
                reply = ("ok", renderer.render(pose))
            except Exception as exc:  # noqa: BLE001 - sent back and raised in the parent
                reply = ("error", f"{type(exc).__name__}: {exc}")
            pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
    finally:
        renderer.close()


class GLProcessRenderer:
    """``render(pose) -> (rgb (H, W, 3) uint8, depth (H, W) float32 m)`` by a GLRenderer in a child
    process. Raises GLUnavailable (with the child's reason) when no GL context can be made there."""

    backend = "gl"

    def __init__(self, room: Room, camera: Camera):
        self._proc = subprocess.Popen([sys.executable, "-m", "glace_core.synthetic.render_process"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr: list[bytes] = []
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        threading.Thread(target=self._read_replies, daemon=True).start()
        try:
            self._send((room, camera))
            status, message = self._receive("starting")
        except GLUnavailable:
            self.close()
            raise
        if status == "unavailable":
            self.close()
            raise GLUnavailable(message)
        if status != "ok":
            self.close()
            raise RuntimeError(f"the GL renderer process failed to start: {message}")

    def _drain_stderr(self) -> None:
        for line in self._proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-20]

    def _send(self, obj) -> None:
        try:
            pickle.dump(obj, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise GLUnavailable(f"the GL renderer process is gone ({self._tail()})") from exc

    def _read_replies(self) -> None:
        """Reader thread: every reply of the child into the queue; its end as the exception."""
        stdout = self._proc.stdout
        while True:
            try:
                self._replies.put(pickle.load(stdout))
            except (EOFError, pickle.UnpicklingError, OSError, ValueError) as exc:
                self._replies.put(exc)
                return

    def _receive(self, what: str):
        try:
            reply = self._replies.get(timeout=_TIMEOUT_S)
        except queue.Empty:
            self._proc.kill()
            raise RuntimeError(f"the GL renderer process did not answer within {_TIMEOUT_S:.0f} s ({what})") from None
        if isinstance(reply, BaseException):
            raise GLUnavailable(f"the GL renderer process died while {what} (exit code {self._proc.poll()}; "
                                f"{self._tail()})")
        return reply

    def _tail(self) -> str:
        text = b"".join(self._stderr).decode(errors="replace").strip()
        return text[-800:] if text else "no error output"

    def render(self, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cam_to_world (4, 4) OpenCV axes → rgb (H, W, 3) uint8, depth (H, W) float32 metres."""
        pose = np.asarray(cam_to_world, np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"cam_to_world must be (4, 4), got {pose.shape}")
        self._send(pose)
        status, payload = self._receive("rendering")
        if status != "ok":
            raise RuntimeError(f"GL rendering failed: {payload}")
        return payload

    def close(self) -> None:
        proc, self._proc = getattr(self, "_proc", None), None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                pickle.dump(None, proc.stdin)
                proc.stdin.flush()
            proc.stdin.close()
            proc.wait(timeout=10)
        except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


def gl_available(room: Room | None = None) -> tuple[bool, str]:
    """Whether a GL context can be made (checked in a child process) and, if not, why."""
    from glace_core.synthetic.build import build_room

    try:
        GLProcessRenderer(room or build_room(0, texels_per_m=20), Camera.default(16, 16)).close()
        return True, ""
    except GLUnavailable as exc:
        return False, str(exc)


if __name__ == "__main__":
    # The protocol owns the real stdout; anything else printed goes to stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, protocol_out)
