"""`colcon build` of the package in a fresh ROS 2 workspace, and the installed executables run.

The package's files (those git tracks plus new, not ignored ones: no .venv, build/ or built
extension) are copied to ``ws/src/glace_ros``; ``colcon build`` (PyPI's colcon-common-extensions,
default isolated install layout) runs with the venv's Python and ROS wheels. The install must hold
what ``ros2 run glace_ros X`` and ``ros2 launch glace_ros ...`` look for, and, with
``install/setup.bash`` sourced, Python must import glace_ros, glace_core and the natively built
dsac_native from the install (not from the editable checkout) and the executables must run.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLCON = Path(sys.executable).parent / "colcon"
PY_DIR = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
ROS_EXECUTABLES = ("relocalizer", "relocalizer_lifecycle", "train_map", "replay_eval")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "install", "log", "dist", "__pycache__", "*.so",
                                     "*.egg-info", ".pytest_cache", "out", "demo_out")

# Runs an installed console script as `ros2 run` would (its file as __main__), then reports where
# the package modules it imported came from.
RUNNER = """
import runpy, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code
for name in ("glace_ros", "glace_core", "dsac_native"):
    if name in sys.modules:
        print("ORIGIN", name, sys.modules[name].__file__, flush=True)
sys.exit(code)
"""

IMPORT_CHECK = """
import numpy as np
import dsac_native, dsac_native._dsac_native as ext, glace_core, glace_ros
from ament_index_python.packages import get_package_prefix, get_package_share_directory
rng = np.random.default_rng(0)
points = rng.uniform([-1, -1, 2], [1, 1, 4], (200, 3))
pixels = 100.0 * points[:, :2] / points[:, 2:] + 64.0
result = dsac_native.estimate_pose_from_correspondences(pixels, points, 100.0, 100.0, 64.0, 64.0)
assert result.success and np.allclose(result.camera_to_world, np.eye(4), atol=1e-3), result.camera_to_world
for label, path in (("ext", ext.__file__), ("dsac_native", dsac_native.__file__), ("glace_core", glace_core.__file__),
                    ("glace_ros", glace_ros.__file__), ("prefix", get_package_prefix("glace_ros")),
                    ("share", get_package_share_directory("glace_ros"))):
    print("PATH", label, path)
"""


def _copy_package(dest: Path) -> None:
    """The package sources as a clone would have them (git's file list; a plain copy without git)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True, timeout=60).stdout
        names = [n for n in out.decode().split("\0") if n and (ROOT / n).is_file()]
    except (OSError, subprocess.CalledProcessError):
        names = []
    if not names:
        shutil.copytree(ROOT, dest, ignore=COPY_IGNORE, symlinks=True)
        return
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def _sourced(ws: Path, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``command`` in bash after sourcing the workspace's install/setup.bash."""
    return subprocess.run(["bash", "-c", f'source "{ws}/install/setup.bash" && {command}'], cwd=ws,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))


def _lines(text: str, tag: str) -> dict[str, str]:
    return {parts[1]: parts[2] for parts in (line.split(" ", 2) for line in text.splitlines())
            if len(parts) == 3 and parts[0] == tag}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    assert COLCON.is_file(), f"colcon is not installed in the venv ({COLCON}); make setup installs it"
    ws = tmp_path_factory.mktemp("colcon_ws")
    _copy_package(ws / "src" / "glace_ros")
    assert not list((ws / "src").rglob("*.so")), "built artefacts leaked into the workspace sources"
    out = subprocess.run([str(COLCON), "build", "--event-handlers", "console_cohesion+"], cwd=ws,
                         capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-4000:]
    assert "Summary: 1 package finished" in out.stdout, out.stdout[-3000:]  # glace_ros only
    return ws


def test_install_layout(workspace):
    prefix = workspace / "install" / "glace_ros"
    for name in ROS_EXECUTABLES:  # where `ros2 run glace_ros NAME` looks
        script = prefix / "lib" / "glace_ros" / name
        assert script.is_file() and os.access(script, os.X_OK), script
    share = prefix / "share"
    for rel in ("glace_ros/package.xml", "glace_ros/config/relocalizer.yaml", "glace_ros/launch/relocalizer.launch.py",
                "glace_ros/launch/replay_eval.launch.py", "ament_index/resource_index/packages/glace_ros"):
        assert (share / rel).is_file(), share / rel
    launch_files = sorted(p.name for p in (ROOT / "launch").glob("*.launch.py"))
    assert sorted(p.name for p in (share / "glace_ros" / "launch").glob("*.launch.py")) == launch_files
    ext = prefix / PY_DIR / "dsac_native" / f"_dsac_native{EXT_SUFFIX}"
    assert ext.is_file(), f"the native extension was not installed: {ext}"
    assert (prefix / PY_DIR / "glace_core" / "weights").is_dir(), "glace_core's package data was not installed"


def test_installed_modules_import_from_the_install(workspace):
    prefix = workspace / "install" / "glace_ros"
    out = _sourced(workspace, f"python -c {shlex.quote(IMPORT_CHECK)}")
    assert out.returncode == 0, out.stdout + out.stderr
    paths = _lines(out.stdout, "PATH")
    site = prefix / PY_DIR
    assert paths["ext"] == str(site / "dsac_native" / f"_dsac_native{EXT_SUFFIX}"), paths
    for name in ("dsac_native", "glace_core", "glace_ros"):
        assert Path(paths[name]).is_relative_to(site), paths
    assert paths["prefix"] == str(prefix), paths
    assert paths["share"] == str(prefix / "share" / "glace_ros"), paths


@pytest.mark.parametrize("name,package", [("train_map", "glace_ros"), ("replay_eval", "glace_ros"),
                                          ("glace-eval", "glace_core")])
def test_installed_scripts_show_help(workspace, name, package):
    prefix = workspace / "install" / "glace_ros"
    script = prefix / "lib" / "glace_ros" / name
    out = _sourced(workspace, f"python -c {shlex.quote(RUNNER)} {script} --help")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "usage:" in out.stdout, out.stdout
    origins = _lines(out.stdout, "ORIGIN")
    assert Path(origins[package]).is_relative_to(prefix / PY_DIR), origins


def test_installed_relocalizer_starts_and_names_a_missing_map(workspace, tmp_path):
    """With a map that does not exist, the installed node starts rclpy, reads its parameters and
    stops with a fatal error naming the file (exit 1): the installed node runs, not only its --help."""
    prefix = workspace / "install" / "glace_ros"
    missing = tmp_path / "no_such_map.pt"
    args = f"--ros-args -r __ns:=/colcon{os.getpid()} -p map_path:={missing}"
    direct = _sourced(workspace, f"{prefix}/lib/glace_ros/relocalizer {args}")
    via_runner = _sourced(workspace, f"python -c {shlex.quote(RUNNER)} {prefix}/lib/glace_ros/relocalizer {args}")
    for out in (direct, via_runner):
        text = out.stdout + out.stderr
        assert out.returncode == 1, text
        assert "FATAL" in text and str(missing) in text and "Traceback" not in text, text
    assert Path(_lines(via_runner.stdout, "ORIGIN")["glace_ros"]).is_relative_to(prefix / PY_DIR), via_runner.stdout
