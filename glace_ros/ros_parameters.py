"""Declaring the relocalizer's parameters on an rclpy node, with descriptors and validation.

The table is ``glace_ros.relocalizer_params.PARAMETERS`` (no ROS there); this module turns each entry
into a declared parameter with a ParameterDescriptor (description, range, read-only) and checks
every change with ``validate_parameter`` before rclpy applies it.
"""
from __future__ import annotations

import array
from typing import Any, Callable

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from glace_ros.relocalizer_params import PARAMETERS, PARAMETERS_BY_NAME, RelocalizerParams, validate_parameter

__all__ = ["plain_value", "declare_parameters", "ParameterWatcher"]


def plain_value(value: Any) -> Any:
    """rclpy parameter values -> plain Python (integer arrays arrive as array.array)."""
    if isinstance(value, (array.array, np.ndarray)):
        return [int(v) for v in value]
    return value


def _descriptor(spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=spec.name, description=spec.description,
                               additional_constraints=spec.constraint_text(), read_only=spec.read_only)
    if spec.minimum is not None and spec.maximum is not None:
        if spec.type_name == "int":
            desc.integer_range = [IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=0)]
        elif spec.type_name == "double":
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.minimum),
                                                            to_value=float(spec.maximum), step=0.0)]
    return desc


def declare_parameters(node) -> RelocalizerParams:
    """Declare every parameter on ``node`` and return their validated values (ValueError names
    every invalid one)."""
    for spec in PARAMETERS:
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        node.declare_parameter(spec.name, default, _descriptor(spec))
    return RelocalizerParams.from_mapping({s.name: plain_value(node.get_parameter(s.name).value) for s in PARAMETERS})


class ParameterWatcher:
    """Validates parameter changes and keeps ``params`` current.

    ``extra_checks`` maps a parameter name to a callable(value) -> reason or None run after the
    table's validation (e.g. loading a new map for ``map_path``); ``on_change`` gets the new
    RelocalizerParams after a successful change.
    """

    def __init__(self, node, params: RelocalizerParams, extra_checks: dict[str, Callable[[Any], str | None]],
                 on_change: Callable[[RelocalizerParams], None]):
        self.params, self._extra, self._on_change = params, extra_checks, on_change
        node.add_on_set_parameters_callback(self._check)
        node.add_post_set_parameters_callback(self._applied)

    def _check(self, parameters) -> SetParametersResult:
        ours = [(p.name, plain_value(p.value)) for p in parameters if p.name in PARAMETERS_BY_NAME]
        for name, value in ours:
            reason = validate_parameter(name, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        for name, value in ours:
            check = self._extra.get(name)
            reason = check(value) if check is not None else None
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _applied(self, parameters) -> None:
        changes = {p.name: plain_value(p.value) for p in parameters if p.name in PARAMETERS_BY_NAME}
        if changes:
            self.params = self.params.replace(**changes)
            self._on_change(self.params)
