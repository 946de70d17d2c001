"""launch/depth.launch.py: what each argument does to the node, checked on the source
everywhere, and the file loaded with the real ``launch`` package where ROS provides it.

Without ``launch`` (not on PyPI) the file is read as a syntax tree: which launch
arguments feed which node parameter, remapping, namespace or parameter file. The
expectations come from the node itself (its parameter table and the topics it
subscribes to) and the README, not from a list kept here.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from pathlib import Path

import pytest
import yaml

from depth_pro_ros.model.weights import DEFAULT_CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "depth.launch.py"
NODE_FILE = ROOT / "depth_pro_ros" / "ros" / "node.py"


def _call_name(node: ast.AST) -> str | None:
    return node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
        else None


class _LaunchSource:
    """The launch file's ARGUMENTS table and the Node call of generate_launch_description."""

    def __init__(self) -> None:
        tree = ast.parse(LAUNCH_FILE.read_text())
        self.arguments: dict[str, tuple[ast.expr, str]] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "ARGUMENTS":
                for entry in stmt.value.elts:
                    name, default, description = entry.elts
                    self.arguments[name.value] = (default, description.value)
        function = next(s for s in tree.body if isinstance(s, ast.FunctionDef)
                        and s.name == "generate_launch_description")
        self.local = {s.targets[0].id: s.value for s in function.body
                      if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)}
        nodes = [n for n in ast.walk(function) if _call_name(n) == "Node"]
        assert len(nodes) == 1, "one Node in the launch description"
        self.node = {k.arg: k.value for k in nodes[0].keywords}

    def configs(self, expr: ast.AST) -> set[str]:
        """Launch arguments (LaunchConfiguration names) an expression depends on."""
        found = set()
        for n in ast.walk(expr):
            if _call_name(n) == "LaunchConfiguration":
                found.add(n.args[0].value)
            elif isinstance(n, ast.Name) and n.id in self.local:
                found |= self.configs(self.local[n.id])
        return found

    def default(self, name: str) -> str:
        """An argument's default as a string (paths built with os.path evaluated)."""
        return eval(compile(ast.Expression(self.arguments[name][0]), "<default>", "eval"),
                    {"os": os})

    def parameter_map(self) -> dict[str, ast.expr]:
        """Node parameter -> the expression the launch file sets it to."""
        (overrides,) = [e for e in self.node["parameters"].elts if isinstance(e, ast.Dict)]
        return {k.value: v for k, v in zip(overrides.keys, overrides.values)}

    def remappings(self) -> dict[str, ast.expr]:
        return {pair.elts[0].value: pair.elts[1] for pair in self.node["remappings"].elts}

    def parameter_files(self) -> set[str]:
        return set().union(*(self.configs(e) for e in self.node["parameters"].elts
                             if not isinstance(e, ast.Dict)))


@pytest.fixture(scope="module")
def launch() -> _LaunchSource:
    return _LaunchSource()


@pytest.fixture(scope="module")
def node_parameters() -> dict:
    from depth_pro_ros.ros.parameters import PARAMETERS  # rcl_interfaces, from the ROS wheels

    return {p.name: p for p in PARAMETERS}


def _subscribed_topics() -> set[str]:
    """Every topic name the node may subscribe to (both branches of a conditional)."""
    tree = ast.parse(NODE_FILE.read_text())
    topics = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "create_subscription":
            topics |= {c.value for c in ast.walk(call.args[1]) if isinstance(c, ast.Constant)}
    return topics


def test_every_argument_changes_the_node_and_nothing_undeclared_is_read(launch):
    used = launch.configs(ast.Module(body=[ast.Expr(v) for v in launch.node.values()],
                                     type_ignores=[]))
    assert used == set(launch.arguments)
    assert all(description.strip() for _, description in launch.arguments.values())


def test_parameter_arguments_set_real_node_parameters_with_the_nodes_defaults(
        launch, node_parameters):
    params = launch.parameter_map()
    assert params and set(params) <= set(node_parameters)
    for parameter, expr in params.items():
        (argument,) = launch.configs(expr)
        spec = node_parameters[parameter]
        description = launch.arguments[argument][1]
        if isinstance(expr, ast.Call) and _call_name(expr) == "LaunchConfiguration":
            if parameter == "checkpoint":
                # The node has no default weights; the launch file supplies the same
                # default path as the depth-pro-ros command.
                assert launch.default(argument) == str(DEFAULT_CHECKPOINT.expanduser())
            elif isinstance(spec.default, tuple):
                # launch reads a list argument ("[front, left]") as YAML.
                assert yaml.safe_load(launch.default(argument)) == spec.value
            else:
                assert launch.default(argument) == spec.default, parameter
            for choice in spec.choices:  # a user sees every accepted value
                assert re.search(rf"\b{re.escape(choice)}\b", description), (choice, argument)


def test_use_compressed_switches_the_input_transport(launch, node_parameters):
    """The PythonExpression behind input_transport, evaluated as launch would."""
    expr = launch.parameter_map()["input_transport"]
    assert launch.configs(expr) == {"use_compressed"}
    pieces = launch.local[expr.id].args[0].elts

    def transport(value: str) -> str:
        text = "".join(value if _call_name(p) == "LaunchConfiguration" else p.value
                       for p in pieces)
        return eval(text, {})  # what PythonExpression does with the substituted text

    spec = node_parameters["input_transport"]
    assert transport(launch.default("use_compressed")) == spec.default == "raw"
    for value in ("true", "True", "1"):
        assert transport(value) == "compressed"
    assert set(map(transport, ("false", "0", "no"))) == {"raw"}
    assert {"raw", "compressed"} <= set(spec.choices)


def test_topic_arguments_remap_the_nodes_subscriptions(launch):
    remaps = launch.remappings()
    assert set(remaps) == _subscribed_topics() == {
        "image", "image/compressed", "camera_info", "anchor/depth", "anchor/points"}
    for topic, target in remaps.items():
        (argument,) = launch.configs(target)
        if isinstance(target, ast.List):  # "<image_topic>/compressed"
            suffixes = [e.value for e in target.elts if isinstance(e, ast.Constant)]
            assert topic == f"{launch.default(argument)}{''.join(suffixes)}"
        else:
            # By default every topic keeps its own name: no remapping happens.
            assert launch.default(argument) == topic


def test_namespace_and_parameter_file(launch):
    assert launch.configs(launch.node["namespace"]) == {"namespace"}
    assert launch.default("namespace") == ""  # outputs stay relative to the node
    assert launch.parameter_files() == {"params_file"}
    # The default file is the package's config/depth_pro.yaml, installed by setup.py.
    default = launch.arguments["params_file"][0]
    assert [a.value for a in default.args[0].elts[1:]] == ["config", "depth_pro.yaml"]
    assert (ROOT / "config" / "depth_pro.yaml").is_file()
    assert "share/{PACKAGE}/config" in (ROOT / "setup.py").read_text()


def test_readme_documents_every_argument(launch):
    reference = (ROOT / "docs" / "node.md").read_text()  # the README links to it
    section = reference.split("\n## Launch file\n", 1)[1].split("\n#", 1)[0]
    for name in launch.arguments:
        assert f"`{name}`" in section, name


def test_launch_description_loads_with_ros_launch(launch):
    # launch.actions, not launch: the repository's own launch/ folder imports as "launch".
    pytest.importorskip("launch.actions", reason="the ROS 2 'launch' package is not on PyPI")
    pytest.importorskip("launch_ros", reason="the ROS 2 'launch_ros' package is not on PyPI")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    spec = importlib.util.spec_from_file_location("depth_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    arguments = {e.name: e.description for e in description.entities
                 if isinstance(e, DeclareLaunchArgument)}
    assert arguments == {name: d for name, (_, d) in launch.arguments.items()}
    nodes = [e for e in description.entities if isinstance(e, Node)]
    assert len(nodes) == 1 and nodes[0].node_executable == "depth_pro_node"
