"""Hostile requests to a node's parameter services, for checking that it survives them.

:class:`MalformedParameters` yields :class:`ServiceCase` objects: a named kind of bad
request, the service it goes to (``set_parameters``, ``set_parameters_atomically``,
``get_parameters``, ``describe_parameters``, ``get_parameter_types``,
``list_parameters``, and rclpy's ``get_type_description``) and the request itself (a
real ``rcl_interfaces`` / ``type_description_interfaces`` request).
Every ``set`` case must be refused (each result ``successful`` False) and leave the
node's values as they were; every query must be answered. The values aimed at are
``depth_pro_node``'s declared parameters (:data:`depth_pro_ros.ros.parameters.PARAMETERS`):
unknown type codes, NOT_SET, a type other than the declared one, a type code that
disagrees with the filled field, values out of range, NaN and infinities, strings that
are no choice (huge, with NULs), huge arrays, read-only and undeclared names.

Kinds come in shuffled rounds (any ``len(kinds())`` consecutive cases hold each once);
the same seed gives the same requests. ``bench/fuzz_node.py`` and
``test/ros/test_node_fuzz.py`` drive the node with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import (
    DescribeParameters,
    GetParameters,
    GetParameterTypes,
    ListParameters,
    SetParameters,
    SetParametersAtomically,
)
from type_description_interfaces.srv import GetTypeDescription

from depth_pro_ros.ros.parameters import PARAMETERS, ParamSpec

__all__ = ["SERVICES", "MalformedParameters", "ServiceCase", "call", "declared_type",
           "reply_problem"]

#: Service name (relative to the node) -> its type.
SERVICES = {"set_parameters": SetParameters,
            "set_parameters_atomically": SetParametersAtomically,
            "get_parameters": GetParameters, "describe_parameters": DescribeParameters,
            "get_parameter_types": GetParameterTypes, "list_parameters": ListParameters,
            "get_type_description": GetTypeDescription}
_FIELDS = {ParameterType.PARAMETER_BOOL: "bool_value",
           ParameterType.PARAMETER_INTEGER: "integer_value",
           ParameterType.PARAMETER_DOUBLE: "double_value",
           ParameterType.PARAMETER_STRING: "string_value",
           ParameterType.PARAMETER_BYTE_ARRAY: "byte_array_value",
           ParameterType.PARAMETER_BOOL_ARRAY: "bool_array_value",
           ParameterType.PARAMETER_INTEGER_ARRAY: "integer_array_value",
           ParameterType.PARAMETER_DOUBLE_ARRAY: "double_array_value",
           ParameterType.PARAMETER_STRING_ARRAY: "string_array_value"}
INT64_MAX = 2**63 - 1
HUGE = 200_000  # elements of a huge array, characters of a huge string


@dataclass(frozen=True)
class ServiceCase:
    """A kind of request, the service it is sent to and the request; ``refused``: every
    result of the reply must say unsuccessful (the set services)."""

    kind: str
    service: str
    request: Any

    @property
    def refused(self) -> bool:
        return self.service.startswith("set_")


def declared_type(spec: ParamSpec) -> int:
    """The ParameterType a parameter of the table is declared with."""
    d = spec.default
    if isinstance(d, tuple):
        return (ParameterType.PARAMETER_STRING_ARRAY if spec.element is str
                else ParameterType.PARAMETER_DOUBLE_ARRAY)
    if isinstance(d, bool):
        return ParameterType.PARAMETER_BOOL
    if isinstance(d, int):
        return ParameterType.PARAMETER_INTEGER
    if isinstance(d, float):
        return ParameterType.PARAMETER_DOUBLE
    return ParameterType.PARAMETER_STRING


def _param(name: str, type_: int, **values: Any) -> Parameter:
    value = ParameterValue(type=type_)
    for field, v in values.items():
        setattr(value, field, v)
    return Parameter(name=name, value=value)


class MalformedParameters:
    """Seeded source of hostile parameter-service requests for ``depth_pro_node``."""

    def __init__(self, seed: int = 0, specs: Sequence[ParamSpec] = PARAMETERS) -> None:
        self.rng = np.random.default_rng(seed)
        self.specs = tuple(specs)
        self.writable = tuple(s for s in self.specs if not s.read_only)
        self._cases = self._set_cases()
        self._cases.update(self._query_cases())
        self._round: list[str] = []

    def kinds(self) -> list[str]:
        """Every kind, sorted."""
        return sorted(self._cases)

    def malformed(self) -> ServiceCase:
        """The next case (kinds in shuffled rounds)."""
        if not self._round:
            self._round.extend(str(k) for k in self.rng.permutation(self.kinds()))
        kind = self._round.pop()
        service, request = self._cases[kind]()
        return ServiceCase(kind, service, request)

    # ------------------------------------------------------------- helpers
    def _pick(self, specs: Sequence[ParamSpec]) -> ParamSpec:
        return specs[int(self.rng.integers(len(specs)))]

    def _of_type(self, *types: int, writable: bool = True) -> list[ParamSpec]:
        pool = self.writable if writable else self.specs
        return [s for s in pool if declared_type(s) in types]

    def _text(self, length: int) -> str:
        chars = self.rng.integers(1, 0x250, length)  # no NUL here: see "nul_string"
        return "".join(map(chr, chars))

    def _bad_value(self, spec: ParamSpec) -> Parameter:
        """A value of the declared type that the node must refuse."""
        t = declared_type(spec)
        if t == ParameterType.PARAMETER_STRING:
            return _param(spec.name, t, string_value="no_such_" + self._text(8))
        if t == ParameterType.PARAMETER_INTEGER:
            value = int(self.rng.choice([spec.high + 1, spec.low - 1, INT64_MAX, -INT64_MAX]))
            return _param(spec.name, t, integer_value=value)
        value = float(self.rng.choice([math.nan, math.inf, -math.inf, -1e300, 1e300]))
        return _param(spec.name, t, double_value=value)

    # ------------------------------------------------------------- the cases
    def _set_cases(self) -> dict[str, Callable[[], tuple[str, Any]]]:
        def on_both(name: str, make: Callable[[], list[Parameter]]) -> dict:
            return {
                f"set/{name}": lambda: ("set_parameters",
                                        SetParameters.Request(parameters=make())),
                f"atomic/{name}": lambda: ("set_parameters_atomically",
                                           SetParametersAtomically.Request(parameters=make())),
            }

        def type_invalid() -> list[Parameter]:
            code = int(self.rng.choice([10, 99, 127, 200, 255]))
            return [_param(self._pick(self.specs).name, code,
                           integer_value=int(self.rng.integers(-5, 5)))]

        def type_not_set() -> list[Parameter]:  # would undeclare the parameter
            return [_param(self._pick(self.specs).name, ParameterType.PARAMETER_NOT_SET)]

        def type_other() -> list[Parameter]:  # a valid type, not the declared one
            spec = self._pick(self.writable)
            others = [t for t in _FIELDS if t != declared_type(spec)]
            t = int(self.rng.choice(others))
            field = _FIELDS[t]
            value = {"bool_value": True, "integer_value": 1, "double_value": 0.5,
                     "string_value": "1", "byte_array_value": [b"\x01"],
                     "bool_array_value": [True], "integer_array_value": [1],
                     "double_array_value": [0.5], "string_array_value": ["a"]}[field]
            return [_param(spec.name, t, **{field: value})]

        def fields_disagree() -> list[Parameter]:
            # STRING type with the string empty (no choice) and every other field filled.
            spec = self._pick([s for s in self.writable if s.choices])
            return [_param(spec.name, ParameterType.PARAMETER_STRING, string_value="",
                           integer_value=3, double_value=2.5, bool_value=True,
                           string_array_value=["fixed"], double_array_value=[1.0])]

        def bad_value() -> list[Parameter]:
            return [self._bad_value(self._pick(self._of_type(
                ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER,
                ParameterType.PARAMETER_DOUBLE)))]

        def every_bad_value() -> list[Parameter]:  # one bad value for each parameter
            return [self._bad_value(s) for s in self._of_type(
                ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER,
                ParameterType.PARAMETER_DOUBLE)]

        def nan() -> list[Parameter]:
            spec = self._pick(self._of_type(ParameterType.PARAMETER_DOUBLE))
            value = float(self.rng.choice([math.nan, math.inf, -math.inf]))
            return [_param(spec.name, ParameterType.PARAMETER_DOUBLE, double_value=value)]

        def huge_string() -> list[Parameter]:
            spec = self._pick(self._of_type(ParameterType.PARAMETER_STRING))
            return [_param(spec.name, ParameterType.PARAMETER_STRING,
                           string_value=self._text(HUGE))]

        def nul_string() -> list[Parameter]:
            spec = self._pick(self._of_type(ParameterType.PARAMETER_STRING))
            choice = spec.choices[0] if spec.choices else "x"
            return [_param(spec.name, ParameterType.PARAMETER_STRING,
                           string_value="\0" + choice)]  # read up to the NUL: ""

        def huge_array() -> list[Parameter]:
            name = self._pick(self.specs).name
            t = int(self.rng.choice([ParameterType.PARAMETER_DOUBLE_ARRAY,
                                     ParameterType.PARAMETER_STRING_ARRAY,
                                     ParameterType.PARAMETER_INTEGER_ARRAY]))
            field = _FIELDS[t]
            values = {"double_array_value": self.rng.normal(size=HUGE).tolist(),
                      "string_array_value": ["cam"] * (HUGE // 10),
                      "integer_array_value": list(range(HUGE))}[field]
            return [_param(name, t, **{field: values})]

        def read_only() -> list[Parameter]:  # a valid value of the right type
            spec = self._pick([s for s in self.specs if s.read_only])
            t = declared_type(spec)
            value = {"string_value": spec.choices[-1] if spec.choices else "cpu",
                     "bool_value": not spec.default, "integer_value": 14,
                     "double_array_value": [0.0] * 6 + [1.0],
                     "string_array_value": ["front", "left"]}[_FIELDS[t]]
            return [_param(spec.name, t, **{_FIELDS[t]: value})]

        def undeclared() -> list[Parameter]:
            name = str(self.rng.choice(["no_such_parameter", "", "a" * 10_000, "x\0y",
                                        "qos_overrides./cam/image.subscription.depth",
                                        "use_sim_time.extra", "..", "/abs/name"]))
            return [_param(name, ParameterType.PARAMETER_INTEGER, integer_value=1)]

        def depth_range() -> list[Parameter]:  # each value in range, together invalid
            return [_param("min_depth", ParameterType.PARAMETER_DOUBLE, double_value=500.0),
                    _param("max_depth", ParameterType.PARAMETER_DOUBLE, double_value=5.0)]

        def many() -> list[Parameter]:  # a long request, every entry refused
            return [_param(self._pick(self.specs).name, 99) for _ in range(2_000)]

        cases: dict[str, Callable[[], tuple[str, Any]]] = {}
        for name, make in {"type_invalid": type_invalid, "type_not_set": type_not_set,
                           "type_other": type_other, "fields_disagree": fields_disagree,
                           "bad_value": bad_value, "every_bad_value": every_bad_value,
                           "nan": nan, "huge_string": huge_string, "nul_string": nul_string,
                           "huge_array": huge_array, "read_only": read_only,
                           "undeclared": undeclared, "many": many}.items():
            cases.update(on_both(name, make))
        # Atomically only: min_depth 500 and max_depth 5 are each in range but clash
        # (set_parameters would set max_depth 5 alone, a valid change).
        cases["atomic/depth_range"] = lambda: (
            "set_parameters_atomically", SetParametersAtomically.Request(
                parameters=depth_range()))
        return cases

    def _query_cases(self) -> dict[str, Callable[[], tuple[str, Any]]]:
        def names() -> list[str]:
            pool = [s.name for s in self.specs]
            return [str(self.rng.choice(pool)), "no_such_parameter", "x\0y",
                    self._text(int(self.rng.integers(0, 5_000)))]

        def many_names() -> list[str]:
            return [s.name for s in self.specs] * 500

        return {
            "get/undeclared": lambda: ("get_parameters", GetParameters.Request(names=names())),
            "get/many": lambda: ("get_parameters", GetParameters.Request(names=many_names())),
            "describe/undeclared": lambda: (
                "describe_parameters", DescribeParameters.Request(names=names())),
            "types/undeclared": lambda: (
                "get_parameter_types", GetParameterTypes.Request(names=names())),
            "list/odd": lambda: ("list_parameters", ListParameters.Request(
                prefixes=names(), depth=int(self.rng.choice([0, 1, 2**63 - 1])))),
            "type_description/odd": lambda: ("get_type_description", GetTypeDescription.Request(
                type_name=str(self.rng.choice(["x\0y", "sensor_msgs/msg/Image", "a" * 5_000])),
                type_hash=str(self.rng.choice(["", "RIHS01_zz", "RIHS01_" + "0" * 64])),
                include_type_sources=True)),
        }


def reply_problem(case: ServiceCase, response: Any) -> str | None:
    """What is wrong with the node's reply to ``case`` (None: it is right): no reply, or
    a set request that was not refused entry by entry."""
    if response is None:
        return f"{case.kind}: no reply"
    if case.service == "set_parameters":
        results = list(response.results)
        if len(results) != len(case.request.parameters):
            return f"{case.kind}: {len(results)} results for {len(case.request.parameters)}"
    elif case.service == "set_parameters_atomically":
        results = [response.result]
    else:
        return None
    accepted = [r for r in results if r.successful]
    return f"{case.kind}: accepted ({accepted[0]})" if accepted else None


def call(node: Any, target: str, case: ServiceCase, timeout: float,
         spin: Callable[[float], None], clients: dict | None = None) -> Any:
    """Send ``case`` to the node named ``target`` (``/cam/depth_pro_node``) from the rclpy
    ``node``; its reply, or None after ``timeout`` s. ``spin(seconds)`` spins ``node``;
    ``clients``: a dict in which the clients are kept for the next calls (each new client
    costs a DDS discovery), else each call makes and destroys its own."""
    import time

    key = f"{target}/{case.service}"
    client = clients.get(key) if clients is not None else None
    if client is None:
        client = node.create_client(SERVICES[case.service], key)
        if clients is not None:
            clients[key] = client
    try:
        deadline = time.monotonic() + timeout
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                return None
            spin(0.02)
        future = client.call_async(case.request)
        while not future.done():
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                return None
            spin(0.01)
        return future.result()
    finally:
        if clients is None:
            node.destroy_client(client)
