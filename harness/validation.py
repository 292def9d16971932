"""Request validation driven by botocore's service model, with AWS's message format.

botocore checks only required members, types and ``min`` on the client (docs/sagemaker-contract.md §6.1); enums,
patterns, maxima and list sizes are the service's job. Rather than hand-writing per-field checks this
module walks the operation's input shape from ``botocore.session.get_session().get_service_model(...)``
and reports violations the way AWS does::

    1 validation error detected: Value 'my_ep' at 'endpointName' failed to satisfy constraint:
    Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*

Patterns are Java regular expressions (``\\p{Print}``, ``\\z`` ...); the ``regex`` package reads them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import regex
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape

from harness.errors import ControlPlaneError

# Local extensions, by shape name: besides what AWS accepts, a model artifact may be a file:// URL or
# an absolute local path (as in the SageMaker SDK's local mode), so no S3 is needed for a quick try.
LOCAL_PATTERN_EXTENSIONS: dict[str, str] = {
    "Url": r"(file://|/).+",
    "S3ModelUri": r"(file://|/).+",
}


@lru_cache(maxsize=4)
def service_model(name: str) -> ServiceModel:
    """botocore's model of ``sagemaker`` or ``sagemaker-runtime`` (loaded once)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(name)


def operation_model(service: str, operation: str) -> OperationModel | None:
    """The operation's model, or None when the service has no such operation."""
    model = service_model(service)
    if operation not in model.operation_names:
        return None
    return model.operation_model(operation)


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    try:
        return regex.compile(pattern)
    except regex.error:
        return None


def _member_path(parent: str, name: str) -> str:
    # AWS names members lowerCamelCase in paths: 'productionVariants.1.member.modelName'.
    camel = name[:1].lower() + name[1:]
    return f"{parent}.{camel}" if parent else camel


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    return f"'{json.dumps(value, default=str)}'"


def _type_ok(shape: Shape, value: Any) -> bool:
    kind = shape.type_name
    if kind == "string":
        return isinstance(value, str)
    if kind in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "timestamp":
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)
    if kind == "blob":
        return isinstance(value, (str, bytes))
    if kind in ("structure", "map"):
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    return True


class _Walker:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.type_errors: list[str] = []

    def fail(self, value: Any, path: str, constraint: str) -> None:
        self.errors.append(
            f"Value {_shown(value)} at '{path}' failed to satisfy constraint: {constraint}"
        )

    def walk(self, shape: Shape, value: Any, path: str) -> None:
        if value is None:
            return
        if not _type_ok(shape, value):
            self.type_errors.append(f"Value at '{path}' must be of type {shape.type_name}")
            return
        meta = shape.metadata
        kind = shape.type_name
        if kind == "string":
            self._string(shape, value, path)
        elif kind in ("integer", "long", "float", "double"):
            if "min" in meta and value < meta["min"]:
                self.fail(value, path, f"Member must have value greater than or equal to {meta['min']}")
            if "max" in meta and value > meta["max"]:
                self.fail(value, path, f"Member must have value less than or equal to {meta['max']}")
        elif isinstance(shape, StructureShape):
            self._structure(shape, value, path)
        elif isinstance(shape, ListShape):
            self._length(meta, value, path)
            for index, item in enumerate(value, start=1):
                if item is None:
                    self.fail(None, f"{path}.{index}.member", "Member must not be null")
                else:
                    self.walk(shape.member, item, f"{path}.{index}.member")
        elif isinstance(shape, MapShape):
            self._length(meta, value, path)
            for key, item in value.items():
                self.walk(shape.key, key, f"{path}.key")
                self.walk(shape.value, item, f"{path}.{key}")

    def _length(self, meta: dict[str, Any], value: Any, path: str) -> None:
        if "min" in meta and len(value) < meta["min"]:
            self.fail(value, path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")

    def _string(self, shape: Shape, value: str, path: str) -> None:
        meta = shape.metadata
        self._length(meta, value, path)
        enum = meta.get("enum")
        if enum and value not in enum:
            self.fail(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
        pattern = meta.get("pattern")
        if pattern:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                extension = LOCAL_PATTERN_EXTENSIONS.get(shape.name)
                if extension is None or regex.fullmatch(extension, value) is None:
                    self.fail(value, path, f"Member must satisfy regular expression pattern: {pattern}")

    def _structure(self, shape: StructureShape, value: dict[str, Any], path: str) -> None:
        for name in shape.required_members:
            if value.get(name) is None:
                self.fail(None, _member_path(path, name), "Member must not be null")
        for name, item in value.items():
            member = shape.members.get(name)
            if member is not None:  # unknown members are ignored, as AWS's JSON services do
                self.walk(member, item, _member_path(path, name))


def validation_errors(shape: Shape, value: Any) -> list[str]:
    """Every constraint ``value`` violates, as AWS phrases them (empty list when valid)."""
    walker = _Walker()
    walker.walk(shape, value, "")
    return walker.type_errors + walker.errors


def format_errors(errors: list[str]) -> str:
    """AWS's summary line: ``N validation error(s) detected: A; B``."""
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(errors)


def validate_input(operation: OperationModel, params: Any) -> None:
    """Raise ``ControlPlaneError`` (ValidationException / SerializationException) for invalid input."""
    shape = operation.input_shape
    if shape is None:
        return
    if not isinstance(params, dict):
        raise ControlPlaneError("The request body must be a JSON object.", code="SerializationException")
    walker = _Walker()
    walker.walk(shape, params, "")
    if walker.type_errors:
        raise ControlPlaneError(walker.type_errors[0], code="SerializationException")
    if walker.errors:
        raise ControlPlaneError(format_errors(walker.errors))
