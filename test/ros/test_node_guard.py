"""The node's guards (depth_pro_ros/ros/guard.py) on real rclpy nodes in this process: a
service request whose handling raises gets a failure reply, and an exception escaping
any callback is logged once per period while spinning goes on.

(The node process itself meets every kind of hostile parameter request in
test_node_fuzz.py.)"""

from __future__ import annotations

import threading
import time

import pytest
import rclpy
from harness.malformed_parameters import call
from harness.node import set_ros_env
from rcl_interfaces.msg import Parameter, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from depth_pro_ros.ros.guard import Reporter, guard_services, shown, spin


@pytest.fixture(scope="module")
def context():
    set_ros_env()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


class _Case:
    def __init__(self, service: str, request) -> None:
        self.kind, self.service, self.request = service, service, request


def _bad(name: str, type_: int = 99) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=type_, integer_value=3))


def test_a_parameter_request_that_raises_in_rclpy_gets_a_failure_reply(context):
    server = Node("guarded", context=context)
    server.declare_parameter("rate", 1.0)
    server.declare_parameter("count", 2)
    guard_services(server, Reporter(server, 5.0))
    client = Node("guard_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(server)
    executor.add_node(client)

    def spin_both(seconds: float) -> None:
        executor.spin_once(timeout_sec=seconds)

    try:
        # One bad entry among good ones: it alone is refused, the good one is set.
        ok = Parameter(name="count", value=ParameterValue(type=2, integer_value=7))
        reply = call(client, "/guarded", _Case("set_parameters", SetParameters.Request(
            parameters=[_bad("rate"), ok])), 20.0, spin_both)
        assert reply is not None
        assert [r.successful for r in reply.results] == [False, True]
        assert "ParameterValue.type 99 is not a parameter type" in reply.results[0].reason
        assert server.get_parameter("count").value == 7
        reply = call(client, "/guarded", _Case(
            "set_parameters_atomically", SetParametersAtomically.Request(
                parameters=[ok, _bad("count", 200)])), 20.0, spin_both)
        assert reply is not None and not reply.result.successful
        assert "ParameterValue.type 200" in reply.result.reason
        # The server still answers.
        reply = call(client, "/guarded", _Case("get_parameters", GetParameters.Request(
            names=["rate", "count"])), 20.0, spin_both)
        assert [v.double_value for v in reply.values][:1] == [1.0]
    finally:
        executor.remove_node(server)
        executor.remove_node(client)
        server.destroy_node()
        client.destroy_node()


def test_spin_logs_an_escaping_exception_and_goes_on(capfd):
    set_ros_env()
    context = rclpy.Context()  # its own: the test shuts it down
    rclpy.init(context=context)
    node = Node("guarded_spin", context=context)
    ticks: list[float] = []
    # Shutting the context down from another thread, as rclpy's signal handler does.
    stop = threading.Thread(target=lambda: rclpy.try_shutdown(context=context))

    def tick() -> None:
        ticks.append(time.monotonic())
        if len(ticks) == 6:
            stop.start()  # ends the spin from outside, as SIGTERM would
        raise RuntimeError(f"tick {len(ticks)} failed")

    node.create_timer(0.01, tick)
    try:
        spin(node, Reporter(node, 60.0))  # returns when the context shuts down
    finally:
        stop.join()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert len(ticks) >= 6  # every tick raised, and spinning went on
    err = capfd.readouterr().err
    assert err.count("a callback failed and was skipped: RuntimeError: tick 1 failed") == 1
    assert "tick 2 failed" not in err  # one line per kind per period


def test_shown_cuts_long_values():
    assert shown("abc") == "'abc'"
    text = shown("x" * 10_000)
    assert len(text) < 120 and "10002 characters" in text
