"""launch/depth.launch.py checked cheaply on its source, everywhere: which arguments set
which node parameter or remap which topic, their defaults and descriptions, and its
pure-Python helpers (run without ROS' ``launch`` package, which is not on PyPI): the
argument conversions.

The real run (colcon build, ``ros2 launch``, DDS) is test_launch_real.py. The expectations
here come from the node (its parameter table, the topics it subscribes to), the weights
module and docs/node.md, not from a list kept here.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path

import pytest
import yaml

from depth_pro_ros.model.weights import CHECKPOINT_ENV, DEFAULT_CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
NODE_FILE = ROOT / "depth_pro_ros" / "ros" / "node.py"
# What of the launch file runs without ROS' launch package: constants and helpers.
CONSTANTS = {"NODE_NAME", "NOT_GIVEN", "PARAMETER_OF", "REMAPPED_BY"}
HELPERS = {"_cameras", "_transport"}


def _call_name(node: ast.AST) -> str | None:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        else None


class _LaunchSource:
    """The launch file's constants and helpers (executed), its ARGUMENTS table (names,
    descriptions, and defaults: evaluated, or the syntax tree where launch substitutions
    build them) and the names it reads with LaunchConfiguration."""

    def __init__(self) -> None:
        tree = ast.parse(LAUNCH_FILE.read_text())
        pure = [s for s in tree.body
                if isinstance(s, ast.FunctionDef) and s.name in HELPERS
                or isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)
                and s.targets[0].id in CONSTANTS]
        self.ns: dict = {"os": os, "re": re, "yaml": yaml}
        exec(compile(ast.Module(body=pure, type_ignores=[]), str(LAUNCH_FILE), "exec"),
             self.ns)
        assert CONSTANTS | HELPERS <= set(self.ns), "a constant or helper was renamed"
        (table,) = [s.value for s in tree.body if isinstance(s, ast.Assign)
                    and getattr(s.targets[0], "id", "") == "ARGUMENTS"]
        self.arguments: dict[str, tuple[object, str]] = {}
        for entry in table.elts:
            name, default, description = entry.elts
            if _call_name(default) is None:
                default = self._eval(default)
            self.arguments[name.value] = (default, self._eval(description))
        self.read = {n.args[0].value for n in ast.walk(tree)
                     if _call_name(n) == "LaunchConfiguration"
                     and isinstance(n.args[0], ast.Constant)}

    def _eval(self, expr: ast.expr):
        return eval(compile(ast.Expression(expr), str(LAUNCH_FILE), "eval"), dict(self.ns))

    def default(self, name: str):
        return self.arguments[name][0]

    def description(self, name: str) -> str:
        return self.arguments[name][1]


@pytest.fixture(scope="module")
def launch() -> _LaunchSource:
    return _LaunchSource()


@pytest.fixture(scope="module")
def node_parameters() -> dict:
    from depth_pro_ros.ros.parameters import PARAMETERS  # rcl_interfaces, from the ROS wheels

    return {p.name: p for p in PARAMETERS}


def _subscribed_topics() -> set[str]:
    """Every topic name the node may subscribe to: the topic argument of its
    create_subscription calls (or of a local helper named *subscribe): string constants,
    both branches of a conditional, the arguments of a call such as cam.topic(...), local
    variables followed within their function."""
    def names(expr: ast.expr, local: dict) -> set[str]:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.IfExp):
            return names(expr.body, local) | names(expr.orelse, local)
        if isinstance(expr, ast.Call):
            return set().union(*(names(a, local) for a in expr.args))
        if isinstance(expr, ast.Name) and expr.id in local:
            return names(local[expr.id], local)
        return set()

    topics = set()
    for function in ast.walk(ast.parse(NODE_FILE.read_text())):
        if not isinstance(function, ast.FunctionDef):
            continue
        local = {s.targets[0].id: s.value for s in ast.walk(function)
                 if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)}
        for call in ast.walk(function):
            if isinstance(call, ast.Call):
                name = getattr(call.func, "attr", None) or getattr(call.func, "id", "")
                if name.endswith("subscribe") or name == "create_subscription":
                    topics |= names(call.args[1], local)
    return topics


def test_every_argument_is_described_and_read_and_nothing_undeclared_is(launch):
    parameters, remaps = launch.ns["PARAMETER_OF"], launch.ns["REMAPPED_BY"]
    read = launch.read | set(parameters) | set(remaps.values())
    assert read == set(launch.arguments)
    assert all(launch.description(name).strip() for name in launch.arguments)


def test_parameter_arguments_leave_the_file_alone_unless_typed(launch, node_parameters):
    """Each sets a real node parameter; its default is 'not given' (the file's value
    stays), and its description names every value the node accepts."""
    not_given = launch.ns["NOT_GIVEN"]
    for argument, parameter in launch.ns["PARAMETER_OF"].items():
        spec = node_parameters[parameter]
        assert launch.default(argument) == not_given, argument
        assert "not given" in launch.description(argument).lower(), argument
        for choice in spec.choices:
            if argument != "use_compressed":  # true / false stand for its two choices
                assert re.search(rf"\b{re.escape(choice)}\b", launch.description(argument)), \
                    (choice, argument)


def test_the_default_checkpoint_is_the_command_lines(launch):
    """Not typed and empty in the file: the node's default, $DEPTH_PRO_CHECKPOINT, else the
    same path as the depth-pro-ros command (the real run checks the node uses it)."""
    assert CHECKPOINT_ENV in launch.description("checkpoint")
    assert str(DEFAULT_CHECKPOINT) in launch.description("checkpoint")


def test_use_compressed_and_cameras_arguments_convert_to_parameter_values(
        launch, node_parameters):
    transport, cameras = launch.ns["_transport"], launch.ns["_cameras"]
    for word in ("true", "True", "1", "yes"):
        assert transport(word) == "compressed"
    for word in ("false", "FALSE", "0", "no"):
        assert transport(word) == "raw"
    with pytest.raises(ValueError, match="use_compressed must be true or false"):
        transport("maybe")
    assert set(map(transport, ("true", "false"))) <= set(node_parameters["input_transport"]
                                                          .choices)
    assert cameras("[front, left]") == cameras("front, left") == ["front", "left"]
    assert cameras("front") == ["front"] and cameras("[]") == []
    with pytest.raises(ValueError, match="cameras"):
        cameras("[front, left")


def test_topic_arguments_remap_the_nodes_subscriptions(launch):
    from depth_pro_ros.stream.transport import INPUT_TRANSPORTS

    remaps = launch.ns["REMAPPED_BY"]
    # The image topics come from the transport table (one per transport), the others from
    # the node's create_subscription calls.
    subscribed = _subscribed_topics() | {t.topic for t in INPUT_TRANSPORTS.values()}
    # image/compressed follows image_topic ("<image_topic>/compressed").
    assert set(remaps) | {"image/compressed"} == subscribed == {
        "image", "image/compressed", "camera_info", "anchor/depth", "anchor/points"}
    for topic, argument in remaps.items():
        # By default every topic keeps its own name: no remapping happens.
        assert launch.default(argument) == topic


def test_namespace_and_parameter_file(launch):
    assert "namespace" in launch.read and launch.default("namespace") == ""
    assert "params_file" in launch.read
    # The default file is the package's config/depth_pro.yaml, installed by setup.py.
    default = launch.default("params_file")
    assert [a.value for a in default.args[0].elts[1:]] == ["config", "depth_pro.yaml"]
    assert (ROOT / "config" / "depth_pro.yaml").is_file()
    assert "share/{PACKAGE}/config" in (ROOT / "setup.py").read_text()


def test_docs_document_every_argument(launch):
    reference = (ROOT / "docs" / "node.md").read_text()  # the README links to it
    section = reference.split("\n## Launch file\n", 1)[1].split("\n#", 1)[0]
    for name in launch.arguments:
        assert f"`{name}`" in section, name


def test_launch_description_loads_with_ros_launch(launch):
    # launch.actions, not launch: the repository's own launch/ folder imports as "launch".
    pytest.importorskip("launch.actions", reason="the ROS 2 'launch' package is not on PyPI")
    pytest.importorskip("launch_ros", reason="the ROS 2 'launch_ros' package is not on PyPI")
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {e.name: e.description for e in description.entities
                 if isinstance(e, DeclareLaunchArgument)}
    assert arguments == {name: d for name, (_, d) in launch.arguments.items()}
    assert sum(isinstance(e, OpaqueFunction) for e in description.entities) == 1
