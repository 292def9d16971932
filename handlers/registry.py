"""Framework name -> Handler class. Built-in names, or ``package.module:Class`` for a custom framework."""

from __future__ import annotations

import importlib

from handlers.base import Handler

#: Built-in frameworks; modules are imported only when asked for (importing a framework is expensive).
BUILTIN_HANDLERS: dict[str, str] = {
    "sklearn": "handlers.sklearn_handler:SklearnHandler",
    "pytorch": "handlers.pytorch_handler:PyTorchHandler",
    "tensorflow": "handlers.tensorflow_handler:TensorFlowHandler",
}


def handler_path(framework: str) -> str:
    """The ``module:Class`` path for a framework name or custom path; ValueError if neither."""
    if framework in BUILTIN_HANDLERS:
        return BUILTIN_HANDLERS[framework]
    module, sep, attr = framework.partition(":")
    if not sep or not module or not attr:
        raise ValueError(
            f"unknown framework {framework!r}: use one of {', '.join(sorted(BUILTIN_HANDLERS))} "
            "or a custom handler as package.module:Class"
        )
    return framework


def handler_module(framework: str) -> str:
    """The module that defines the framework's handler (what a fork parent preloads)."""
    return handler_path(framework).partition(":")[0]


def handler_class(framework: str) -> type[Handler]:
    """Import and return the Handler subclass for ``framework``, with errors that say what to fix."""
    module_name, _, attr = handler_path(framework).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import handler module {module_name!r} for framework {framework!r}: {exc}. "
            "Is the framework's extra installed (pip install 'servekit[<framework>]')?"
        ) from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Handler)):
        raise ValueError(f"{module_name}:{attr} is not a handlers.base.Handler subclass")
    return cls
