"""Which images the process backend can run, with which SERVE_FRAMEWORK, and its /opt/ml/model paths."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.backends.process import ProcessBackend, map_model_paths
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


def test_container_model_paths_become_the_extracted_artifact(tmp_path: Path) -> None:
    host = tmp_path / "artifact"
    environment = {
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SERVE_MODEL_DIR": "/opt/ml/model",
        "WEIGHTS": "/opt/ml/model/sub/weights.bin",
        "SIBLING": "/opt/ml/modelx/code",  # another directory that merely shares the prefix
        "INSIDE": "PYTHONPATH=/opt/ml/model/code",  # contains the path but is not one
        "SAGEMAKER_PROGRAM": "inference.py",
    }
    assert map_model_paths(environment, "/opt/ml/model", host) == {
        "SAGEMAKER_SUBMIT_DIRECTORY": f"{host}/code",
        "SERVE_MODEL_DIR": str(host),
        "WEIGHTS": f"{host}/sub/weights.bin",
        "SIBLING": "/opt/ml/modelx/code",
        "INSIDE": "PYTHONPATH=/opt/ml/model/code",
        "SAGEMAKER_PROGRAM": "inference.py",
    }
    # MME containers see their models root at /opt/ml/models; /opt/ml/model is no path of theirs.
    assert map_model_paths({"A": "/opt/ml/models/m1", "B": "/opt/ml/model/code"}, "/opt/ml/models", host) == {
        "A": f"{host}/m1", "B": "/opt/ml/model/code"}
