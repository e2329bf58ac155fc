"""Launch files and the parameter file, checked without ROS's launch (not installable here).

The launch files are parsed with ``ast``: every executable they start must be a console script of
setup.py, every package share file they reference must exist and be installed, every parameter
they set must be a node parameter with the same default, and config/relocalizer.yaml must list
exactly the parameters of ``glace_ros.relocalizer_params`` with their defaults.
"""
from __future__ import annotations

import ast
import glob
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from glace_ros.relocalizer_params import (NODE_NAME, PARAMETERS, PARAMETERS_BY_NAME, RelocalizerParams,
                                          compressed_topic, markdown_table, validate_parameter, yaml_document)

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted(ROOT.glob("launch/*.launch.py"))


def _package_name() -> str:
    return ET.parse(ROOT / "package.xml").getroot().findtext("name")


def _console_scripts() -> dict[str, str]:
    """name -> target of setup.py's CONSOLE_SCRIPTS (read with ast, setup() is not run)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "CONSOLE_SCRIPTS" for t in node.targets):
            entries = ast.literal_eval(node.value)
            return {e.split("=")[0].strip(): e.split("=")[1].strip() for e in entries}
    raise AssertionError("setup.py has no CONSOLE_SCRIPTS list")


class LaunchModule:
    """Statically evaluated facts of one launch file."""

    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.constants: dict[str, object] = {}
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    self.constants[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass  # not a literal (e.g. built from calls)

    def value(self, node: ast.AST):
        if isinstance(node, ast.Name):  # a module-level literal, else None (e.g. a loop variable)
            return self.constants.get(node.id)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "LaunchConfiguration":
            return ("LaunchConfiguration", ast.unparse(node.args[0]))
        return node

    def calls(self, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]

    def kwargs(self, call: ast.Call) -> dict:
        return {k.arg: self.value(k.value) for k in call.keywords if k.arg}

    def executables(self) -> list[tuple[str, str]]:
        """(package, executable) of every Node(...) and ExecutableInPackage(...)."""
        found = []
        for call in self.calls("Node") + self.calls("LifecycleNode") + self.calls("ExecutableInPackage"):
            kw = self.kwargs(call)
            assert isinstance(kw.get("package"), str) and isinstance(kw.get("executable"), str), \
                f"{self.path.name}: package/executable of {ast.unparse(call)} are not literals"
            found.append((kw["package"], kw["executable"]))
        return found

    def share_files(self) -> list[str]:
        """Relative paths of PathJoinSubstitution([FindPackageShare(pkg), "a", "b"]) in the file."""
        paths = []
        for call in self.calls("PathJoinSubstitution"):
            parts = call.args[0].elts
            first = parts[0]
            assert isinstance(first, ast.Call) and first.func.id == "FindPackageShare", ast.dump(first)
            assert self.value(first.args[0]) == _package_name()
            paths.append("/".join(self.value(p) for p in parts[1:]))
        return paths

    def declared_arguments(self) -> set[str]:
        names = set()
        for call in self.calls("DeclareLaunchArgument"):
            arg = self.value(call.args[0])
            if isinstance(arg, str):
                names.add(arg)
        for loop in (n for n in ast.walk(self.tree) if isinstance(n, ast.For)):
            if any(isinstance(c, ast.Call) and getattr(c.func, "id", None) == "DeclareLaunchArgument"
                   for c in ast.walk(loop)):
                table = self.value(loop.iter)
                names.update(row[0] for row in table)
        return names

    def used_configurations(self) -> set[str]:
        used = set()
        for call in self.calls("LaunchConfiguration"):
            arg = call.args[0]
            if isinstance(arg, ast.Constant):
                used.add(arg.value)
        return used


@pytest.fixture(params=LAUNCH_FILES, ids=lambda p: p.name)
def launch_module(request) -> LaunchModule:
    return LaunchModule(request.param)


def test_launch_file_structure(launch_module):
    names = [n.name for n in launch_module.tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in names
    imported = {n.module for n in ast.walk(launch_module.tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros.actions",
                        "launch_ros.parameter_descriptions", "launch_ros.substitutions"}, imported


def test_executables_are_console_scripts(launch_module):
    scripts = _console_scripts()
    executables = launch_module.executables()
    assert executables, f"{launch_module.path.name} starts no executable"
    for package, executable in executables:
        assert package == _package_name()
        assert executable in scripts, f"{executable} is not in setup.py's console_scripts"
        module, func = scripts[executable].split(":")
        target = __import__(module, fromlist=[func])
        assert callable(getattr(target, func)), scripts[executable]


def test_share_files_exist_and_are_installed(launch_module):
    setup_text = (ROOT / "setup.py").read_text()
    for rel in launch_module.share_files():
        assert (ROOT / rel).is_file(), f"{launch_module.path.name} references {rel}, which does not exist"
        folder = rel.split("/")[0]
        globs = re.findall(r'glob\.glob\("(%s/[^"]+)"\)' % folder, setup_text)
        assert any(str(ROOT / rel) in glob.glob(str(ROOT / g)) for g in globs), f"{rel} is not in setup.py data_files"


def test_every_configuration_is_declared(launch_module):
    missing = launch_module.used_configurations() - launch_module.declared_arguments()
    assert not missing, f"{launch_module.path.name} uses undeclared launch arguments {missing}"


def test_relocalizer_launch_parameters_match_the_node():
    module = LaunchModule(ROOT / "launch" / "relocalizer.launch.py")
    assert module.executables() == [(_package_name(), "relocalizer"), (_package_name(), "relocalizer_lifecycle")]
    (node,) = module.calls("Node")
    assert module.kwargs(node)["executable"] == "relocalizer"
    assert module.constants.get("NODE_NAME") == NODE_NAME
    assert "config/relocalizer.yaml" in module.share_files()
    types = {"string": "str", "bool": "bool"}
    rows = module.constants["PARAMETER_ARGUMENTS"]
    assert "map_path" in [r[0] for r in rows]
    for name, default, value_type, _ in rows:
        assert name in PARAMETERS_BY_NAME, f"launch argument {name} is not a node parameter"
        spec = PARAMETERS_BY_NAME[name]
        assert value_type == types[spec.type_name], name
        if default is not None:  # launch arguments are strings; YAML-parse them as launch_ros does
            parsed = yaml.safe_load(default) if value_type != "str" else default
            assert parsed == spec.default, f"launch default of {name} {default!r} != node default {spec.default!r}"


def test_replay_eval_launch_passes_valid_flags():
    from glace_ros.replay_eval import build_parser

    module = LaunchModule(ROOT / "launch" / "replay_eval.launch.py")
    (call,) = module.calls("ExecuteProcess")
    cmd = call.keywords[[k.arg for k in call.keywords].index("cmd")].value.elts
    flags = [module.value(e) for e in cmd if isinstance(e, ast.Constant) and str(e.value).startswith("--")]
    assert "--map" in flags and "--node-params" in flags
    known = {s for a in build_parser()._actions for s in a.option_strings}
    assert set(flags) <= known, f"flags unknown to replay_eval: {set(flags) - known}"


def test_yaml_lists_exactly_the_parameters_with_their_defaults():
    path = ROOT / "config" / "relocalizer.yaml"
    data = yaml.safe_load(path.read_text())
    assert list(data) == [NODE_NAME]
    values = data[NODE_NAME]["ros__parameters"]
    assert list(values) == [p.name for p in PARAMETERS]
    for spec in PARAMETERS:
        expected = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        assert values[spec.name] == expected and type(values[spec.name]) is type(expected), spec.name
    assert path.read_text() == yaml_document(), "config/relocalizer.yaml is stale: regenerate it (see its header)"
    RelocalizerParams.from_mapping(values)


@pytest.mark.parametrize("mode", [{}, {"lockstep": True}, {"as_fast_as_possible": True}, {"flood": True}])
def test_replay_eval_sets_only_valid_node_parameters(tmp_path, mode):
    from glace_ros.replay_eval import ReplayOptions, node_parameters

    opt = ReplayOptions(map_path=str(tmp_path / "m.pt"), hypotheses=32, threshold=5.0, inlier_alpha=50.0,
                        max_reprojection_error=80.0, seed=3, min_inlier_count=0, ensemble_candidates=1,
                        early_accept_ratio=0.0, keyframe_refinement=False, **mode)
    params = node_parameters(opt, "/cam/image", "/cam/info", False)
    RelocalizerParams.from_mapping(params)  # raises naming any unknown or invalid one
    assert (params["hypotheses"], params["inlier_alpha"], params["max_reprojection_error"]) == (32, 50.0, 80.0)
    assert (params["ensemble_candidates"], params["early_accept_ratio"]) == (1, 0.0)
    assert params["keyframe_refinement"] is False
    assert params.get("image_qos", "sensor_data") == ("sensor_data" if mode.get("flood") else "reliable")


def test_node_parameters_reach_the_localizer_options():
    """Each per-frame parameter lands in LocalizerOptions (focal matching on by default, as glace-eval)."""
    assert RelocalizerParams.from_mapping({}).localizer_options().match_focal is True
    opt = RelocalizerParams.from_mapping({"match_focal": False, "image_resolution": 0, "precision": "fp32",
                                          "max_input_pixels": 100_000}).localizer_options()
    assert (opt.match_focal, opt.image_resolution, opt.precision, opt.max_input_pixels) == (False, 0, "fp32", 100_000)
    # the keyframe refinement: on by default, off by the parameter
    assert RelocalizerParams.from_mapping({}).localizer_options().refinement.enabled is True
    off = RelocalizerParams.from_mapping({"keyframe_refinement": False}).localizer_options()
    assert off.refinement.enabled is False


def test_readme_table_matches_when_present():
    readme = ROOT / "README.md"
    assert "| `map_path`" in readme.read_text(), "README.md has no parameter table"
    assert markdown_table() in readme.read_text(), "README parameter table differs from markdown_table()"


# --------------------------------------------------------------------------- the parameter table itself

def test_validation_rejects_bad_values_and_names_them():
    assert validate_parameter("hypotheses", 64) is None
    assert "hypotheses" in validate_parameter("hypotheses", 0)
    assert "threshold" in validate_parameter("threshold", float("nan"))
    assert "tf_mode" in validate_parameter("tf_mode", "base")
    assert "global_mode" in validate_parameter("global_mode", "sometimes")
    assert "global_resolution" in validate_parameter("global_resolution", [480, 641])
    assert validate_parameter("global_resolution", [240, 320]) is None
    assert "publish_point_cloud" in validate_parameter("publish_point_cloud", 1)
    assert "seed" in validate_parameter("seed", 1.5)
    assert "image_topic" in validate_parameter("image_topic", "two words")
    assert "unknown" in validate_parameter("no_such_parameter", 1)
    with pytest.raises(ValueError, match="min_inlier_count"):
        RelocalizerParams().replace(min_inlier_count=-1)
    assert RelocalizerParams().replace(threshold=5).threshold == 5.0


def test_table_covers_the_issue_parameters():
    required = {"map_path", "encoder_path", "device", "image_topic", "camera_info_topic", "use_compressed",
                "image_resolution", "global_checkpoint", "global_mode", "global_resolution", "hypotheses",
                "threshold", "inlier_alpha", "max_reprojection_error", "seed", "min_inlier_count", "map_frame",
                "tf_mode", "odom_frame", "transform_tolerance", "initialpose_mode", "base_frame",
                "tf_child_frame", "transform_publish_rate", "odom_tolerance", "on_demand", "max_input_pixels",
                "image_qos", "publish_point_cloud", "camera_frame", "camera_info_tolerance", "global_every_n"}
    assert required <= set(PARAMETERS_BY_NAME)
    d = RelocalizerParams()
    assert (d.hypotheses, d.threshold, d.inlier_alpha, d.max_reprojection_error) == (64, 10.0, 100.0, 100.0)
    assert (d.map_frame, d.tf_mode, d.image_resolution, d.initialpose_mode) == ("map", "odom", 0, "off")


def test_compressed_topic():
    assert compressed_topic("/camera/image_raw") == "/camera/image_raw/compressed"
    assert compressed_topic("/camera/image_raw/compressed") == "/camera/image_raw/compressed"


def test_markdown_table_lists_every_parameter():
    table = markdown_table()
    assert all(f"| `{p.name}` |" in table for p in PARAMETERS)


def test_relocalizer_help_lists_every_parameter_with_its_default(capsys):
    from glace_ros.relocalizer_node import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: glace-relocalizer")
    for spec in PARAMETERS:
        assert f"    {spec.name}: " in out, spec.name
