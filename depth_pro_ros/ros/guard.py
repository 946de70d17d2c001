"""Keep ``depth_pro_node`` serving whatever a peer sends it.

Any process on the DDS domain can call the node's services (rclpy's parameter services,
the type-description service) with any request, and rclpy lets an exception raised while
handling one (a ``ParameterValue.type`` of 99 raises ``ValueError`` in
``Parameter.from_parameter_msg``) escape from ``spin``, which ends the node. Two guards:

- :func:`guard_services` wraps every service callback of the node: a request whose
  handling raises gets a reply that says it failed (a parameter change: ``successful``
  False with the reason; a query: the empty reply rclpy itself gives for unknown names)
  and one throttled error in the log;
- :func:`spin` runs the executor one callback at a time and logs any exception escaping
  a callback (throttled by its type) instead of ending; Ctrl-C / SIGTERM still end it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import ParameterType, SetParametersResult
from rcl_interfaces.srv import SetParameters, SetParametersAtomically
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from type_description_interfaces.srv import GetTypeDescription

from depth_pro_ros.ros.throttle import ErrorThrottle

__all__ = ["PARAMETER_TYPES", "Reporter", "guard_services", "shown", "spin"]

#: The valid ``ParameterValue.type`` codes (rcl_interfaces/msg/ParameterType).
PARAMETER_TYPES = frozenset(range(ParameterType.PARAMETER_NOT_SET,
                                  ParameterType.PARAMETER_STRING_ARRAY + 1))
_SHOWN_CHARS = 80
#: A type hash as rcl writes it (REP 2011): rcl logs an error for every other one.
_TYPE_HASH = re.compile(r"RIHS01_[0-9a-f]{64}")


def shown(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: a peer's megabyte string or array must
    not end up whole in a reply or the log."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails is still named
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Reporter:
    """One error line per kind of problem per ``period`` seconds, with a count of the
    lines held back (see :class:`ErrorThrottle`)."""

    def __init__(self, node: Node, period: float) -> None:
        self._logger = node.get_logger()
        self._throttle = ErrorThrottle(period)

    def error(self, kind: str, text: str, warning: bool = False) -> None:
        """Log ``text`` unless a line of ``kind`` was logged in the last period."""
        held = self._throttle.admit(kind, time.monotonic())
        if held is None:
            return
        if held:
            text += f" ({held} more like it since the last report)"
        # One call site per severity: rclpy refuses a call site whose severity changes.
        if warning:
            self._logger.warning(text)
        else:
            self._logger.error(text)


def _type_problem(parameters: list) -> str | None:
    """Why a request's parameters cannot be read (an unknown type code), or None."""
    for p in parameters:
        if p.value.type not in PARAMETER_TYPES:
            return (f"parameter {shown(p.name)}: ParameterValue.type {p.value.type} is not a "
                    "parameter type (rcl_interfaces/msg/ParameterType: 0 to 9)")
    return None


def _failed(reason: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=reason)


def _set_parameters(handler: Callable, report: Callable[[str], None]) -> Callable:
    """set_parameters: each parameter on its own, as rclpy does; one that cannot be set
    fails alone with its reason, the others are still set."""

    def handle(request: Any, response: Any) -> Any:
        for p in request.parameters:
            reason = _type_problem([p])
            if reason is None:
                try:
                    one = handler(SetParameters.Request(parameters=[p]),
                                  SetParameters.Response())
                    response.results.append(one.results[0])
                    continue
                except Exception as exc:  # noqa: BLE001 - the peer gets the reason
                    reason = f"parameter {shown(p.name)} not set: {_text(exc)}"
            report(f"set_parameters refused: {reason}")
            response.results.append(_failed(reason))
        return response

    return handle


def _set_atomically(handler: Callable, report: Callable[[str], None]) -> Callable:
    def handle(request: Any, response: Any) -> Any:
        reason = _type_problem(list(request.parameters))
        if reason is None:
            try:
                return handler(request, response)
            except Exception as exc:  # noqa: BLE001 - the peer gets the reason
                reason = f"parameters not set: {_text(exc)}"
        report(f"set_parameters_atomically refused: {reason}")
        response.result = _failed(reason)
        return response

    return handle


def _query(handler: Callable, response_type: type, name: str,
           report: Callable[[str], None]) -> Callable:
    def handle(request: Any, response: Any) -> Any:
        try:
            return handler(request, response)
        except Exception as exc:  # noqa: BLE001 - an empty reply, as for unknown names
            report(f"service {name}: request not answered: {_text(exc)}")
            return response_type()

    return handle


def _type_description(handler: Callable, report: Callable[[str], None]) -> Callable:
    """get_type_description: a malformed type hash is answered here, without the error
    line rcl would log for each such request."""
    query = _query(handler, GetTypeDescription.Response, "get_type_description", report)

    def handle(request: Any, response: Any) -> Any:
        if not _TYPE_HASH.fullmatch(str(request.type_hash)):
            response.successful = False
            response.failure_reason = ("type_hash is not 'RIHS01_' followed by 64 lowercase "
                                       "hexadecimal digits")
            return response
        return query(request, response)

    return handle


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {shown(str(exc), 200)[1:-1]}"


def guard_services(node: Node, reporter: Reporter) -> None:
    """Wrap every service callback ``node`` has now (call it after the node has created
    its services) so that no request can raise out of the executor."""
    for service in node.services:
        if getattr(service.callback, "_guarded", False):
            continue
        name = service.srv_name

        def report(text: str, name: str = name) -> None:
            reporter.error(f"service:{name}", text)

        if service.srv_type is SetParameters:
            wrapped = _set_parameters(service.callback, report)
        elif service.srv_type is SetParametersAtomically:
            wrapped = _set_atomically(service.callback, report)
        elif service.srv_type is GetTypeDescription:
            wrapped = _type_description(service.callback, report)
        else:
            wrapped = _query(service.callback, service.srv_type.Response, name, report)
        wrapped._guarded = True  # type: ignore[attr-defined]
        service.callback = wrapped


def spin(node: Node, reporter: Reporter) -> None:
    """Execute ``node``'s callbacks until the context shuts down (Ctrl-C, SIGTERM); an
    exception escaping a callback is logged (throttled by its type) and spinning goes on.

    Raises:
        KeyboardInterrupt, ExternalShutdownException: as ``rclpy.spin``; the caller
            treats them as a normal end.
    """
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while executor.context.ok():
            try:
                executor.spin_once()
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception as exc:  # noqa: BLE001 - one callback's failure ends nothing
                reporter.error(f"callback:{type(exc).__name__}",
                               f"a callback failed and was skipped: {_text(exc)}")
    finally:
        executor.remove_node(node)
