"""The relocalizer node that glace-replay-eval starts, in a process of its own, and its environment.

The replay must not lose frames whatever shell it runs from (a user's own ROS set-up, a colcon
install, a venv without ``scripts/env.sh``), so :func:`ros_environment` sets what the transport
needs where the caller did not:

- ``FASTDDS_DEFAULT_PROFILES_FILE``: the package's ``config/fastdds_shm.xml`` (a 32 MB shared-memory
  segment, so 900 kB images pass between processes; found through ament, the source checkout or the
  pip prefix);
- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a temporary ``ROS_LOG_DIR``;
- ``OMP_WAIT_POLICY=PASSIVE``, as ``scripts/env.sh`` and the launch file set it (BENCHMARKS.md "CPU
  sharing": torch's spinning OpenMP threads slow the node down when other threads share the cores).

On top of that the node subscribes reliably (``image_qos: reliable``). :class:`NodeProcess`
starts ``glace_ros.relocalizer_node`` with a parameter file; the child gets SIGTERM if this
process dies (Linux ``PR_SET_PDEATHSIG``), and ``stop`` sends SIGINT, then SIGKILL.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["fastdds_profile", "ros_environment", "NodeProcess"]

PROFILE_NAME = "fastdds_shm.xml"
NODE_MAIN = "import sys; from glace_ros.relocalizer_node import main; sys.exit(main())"


def fastdds_profile() -> Path | None:
    """The package's Fast DDS shared-memory profile, or None when it cannot be found."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("glace_ros")) / "config" / PROFILE_NAME)
    except Exception:  # noqa: BLE001 - no ament index in this shell: try the other places
        pass
    candidates.append(Path(__file__).resolve().parents[1] / "config" / PROFILE_NAME)  # source checkout
    candidates.append(Path(sys.prefix) / "share" / "glace_ros" / "config" / PROFILE_NAME)  # pip install
    return next((c for c in candidates if c.is_file()), None)


def ros_environment(base: dict | None = None) -> dict:
    """``base`` (default os.environ) plus the settings of the module docstring where they are unset."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if not env.get("ROS_LOG_DIR"):
        env["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="glace-roslog-")
    if not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        profile = fastdds_profile()
        if profile is None:
            logger.warning("the Fast DDS profile %s was not found: large images may travel slowly", PROFILE_NAME)
        else:
            env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    else:
        logger.info("keeping the caller's FASTDDS_DEFAULT_PROFILES_FILE=%s", env["FASTDDS_DEFAULT_PROFILES_FILE"])
    return env


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class NodeProcess:
    """The relocalizer node in its own process, its output in ``log_path``."""

    def __init__(self, name: str, params: dict, user_params: str | None, env: dict, log_path: Path):
        import yaml

        self.log_path = log_path
        self._params_file = tempfile.NamedTemporaryFile("w", prefix="glace-replay-", suffix=".yaml", delete=False)
        yaml.safe_dump({"/**": {"ros__parameters": params}}, self._params_file)
        self._params_file.close()
        cmd = [sys.executable, "-c", NODE_MAIN, "--ros-args", "-r", f"__node:={name}"]
        if user_params is not None:
            cmd += ["--params-file", str(Path(user_params).resolve())]
        cmd += ["--params-file", self._params_file.name]  # later files override earlier ones
        self._log = open(log_path, "wb")
        logger.info("starting the node: %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout`` s; returns the exit code."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("the node did not stop within %.0f s of SIGINT; killing it", timeout)
                    self.proc.kill()
                    self.proc.wait(5)
            return self.proc.returncode
        finally:
            self._log.close()
            if os.path.exists(self._params_file.name):
                os.unlink(self._params_file.name)
