"""Which images the process backend can run, and with which SERVE_FRAMEWORK."""

from __future__ import annotations

import argparse

import pytest

from harness.backends.process import ProcessBackend
from harness.cli import image_framework


def test_servekit_images_and_mapped_custom_images() -> None:
    backend = ProcessBackend(frameworks={"servekit-onnx": "onnx_handler:OnnxHandler"})
    assert backend.framework_for("123.dkr.ecr.us-east-1.amazonaws.com/servekit-pytorch:2.0") == "pytorch"
    assert backend.framework_for("servekit-onnx") == "onnx_handler:OnnxHandler"
    assert backend.framework_for("registry.local:5000/team/servekit-onnx:1@sha256:" + "0" * 64) == (
        "onnx_handler:OnnxHandler")
    assert backend.framework_for("python:3.11") is None
    with pytest.raises(ValueError, match="--image-framework"):
        backend.check_image("my-own-image:1", multi_model=False, bind_to_port=False)


def test_image_framework_option() -> None:
    assert image_framework("servekit-onnx=onnx_handler:OnnxHandler") == ("servekit-onnx", "onnx_handler:OnnxHandler")
    for bad in ["servekit-onnx", "=m:C", "servekit-onnx=module_without_class"]:
        with pytest.raises(argparse.ArgumentTypeError):
            image_framework(bad)
