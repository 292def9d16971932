"""PyTorch handler: a tiny network trained here, saved as TorchScript, torch.export and a state dict."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch==2.13.0 first (see README)")

from handlers.errors import BadRequestError, ModelLoadError  # noqa: E402
from handlers.model import ServedModel  # noqa: E402
from handlers.pytorch_handler import PyTorchHandler  # noqa: E402
from handlers.registry import handler_class  # noqa: E402
from tests.handlers.helpers import ACCEPTS, assert_clean, decode_output, npy, req, write  # noqa: E402
from tests.handlers.helpers import INPUTS as HANDLER_INPUTS  # noqa: E402

NET_SOURCE = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))
"""


def _net_class(directory: Path) -> type:
    """The same class the user script ships in code/net.py, imported from a real file (TorchScript
    compiles from source, so the class cannot come from exec)."""
    path = write(directory / "servekit_test_net.py", NET_SOURCE)
    spec = importlib.util.spec_from_file_location("servekit_test_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["servekit_test_net"] = module
    spec.loader.exec_module(module)
    return module.Net  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    torch.manual_seed(0)
    model = _net_class(tmp_path_factory.mktemp("net"))()
    x = torch.randn(32, 4)
    y = (x[:, 0] > 0).long()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


X_TEST = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)


def expected(net: torch.nn.Module, x: np.ndarray = X_TEST) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def save(net: torch.nn.Module, model_dir: Path, layout: str) -> Path:
    model_dir.mkdir(parents=True)
    if layout == "torchscript model.pt":
        torch.jit.save(torch.jit.script(net), str(model_dir / "model.pt"))
    elif layout == "traced single *.pth":
        torch.jit.save(torch.jit.trace(net, torch.from_numpy(X_TEST)), str(model_dir / "traced.pth"))
    elif layout == "torch.export *.pt2":
        batch = torch.export.Dim("batch")
        program = torch.export.export(net, (torch.from_numpy(X_TEST),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(model_dir / "net.pt2"))
    elif layout == "state dict + model_fn":
        torch.save(net.state_dict(), model_dir / "model.pth")
        write(model_dir / "code" / "net.py", NET_SOURCE)
        write(
            model_dir / "code" / "inference.py",
            """
            import os
            import torch
            from net import Net

            def model_fn(model_dir):
                model = Net()
                state = torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu", weights_only=True)
                model.load_state_dict(state)
                return model
            """,
        )
    else:
        raise AssertionError(layout)
    return model_dir


INPUTS = {**HANDLER_INPUTS, "application/x-npy (float64)": lambda a: npy(a.astype(np.float64))}
LAYOUTS = ["torchscript model.pt", "traced single *.pth", "torch.export *.pt2", "state dict + model_fn"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_every_codec_match_torch(tmp_path: Path, net: torch.nn.Module, layout: str) -> None:
    served = ServedModel.load(PyTorchHandler(), str(save(net, tmp_path / "m", layout)))
    want = expected(net)
    for ctype, make in INPUTS.items():
        for accept in ACCEPTS:
            out = served.invoke(req(make(X_TEST), ctype.split(" ")[0], accept))
            assert out.content_type == accept
            np.testing.assert_allclose(decode_output(out.body, accept), want, rtol=1e-5, atol=1e-5, err_msg=ctype)
    # A batch of one, and another batch size than the example the program was exported with.
    for rows in (X_TEST[:1], np.vstack([X_TEST, X_TEST])):
        out = served.invoke(req(npy(rows), "application/x-npy", "application/x-npy"))
        np.testing.assert_allclose(np.load(io.BytesIO(out.body)), expected(net, rows), rtol=1e-5, atol=1e-5)
    served.unload()
    assert served.model is None


@pytest.mark.parametrize("layout", ["torchscript model.pt", "torch.export *.pt2"])
def test_bad_input_is_400(tmp_path: Path, net: torch.nn.Module, layout: str) -> None:
    served = ServedModel.load(PyTorchHandler(), str(save(net, tmp_path / "m", layout)))
    with pytest.raises(BadRequestError) as info:
        served.invoke(req("[[1, 2, 3]]"))
    assert_clean(info.value.message)
    with pytest.raises(BadRequestError, match="strings"):
        served.invoke(req('[["a", "b", "c", "d"]]'))
    with pytest.raises(BadRequestError):
        served.invoke(req("[[1, 2], [3]]"))


def test_integer_npy_input_keeps_dtype(tmp_path: Path) -> None:
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(10, 3).eval()
    model_dir = tmp_path / "emb"
    model_dir.mkdir()
    torch.jit.save(torch.jit.script(embedding), str(model_dir / "model.pt"))
    ids = np.array([[1, 2], [3, 9]], dtype=np.int64)
    out = ServedModel.load(PyTorchHandler(), str(model_dir)).invoke(req(npy(ids), "application/x-npy"))
    with torch.no_grad():
        np.testing.assert_allclose(json.loads(out.body), embedding(torch.from_numpy(ids)).numpy(), rtol=1e-6)


def test_user_predict_fn_receives_tensor_and_context(tmp_path: Path, net: torch.nn.Module) -> None:
    model_dir = save(net, tmp_path / "m", "torchscript model.pt")
    write(
        model_dir / "code" / "inference.py",
        """
        import torch

        def predict_fn(data, model, context):
            assert isinstance(data, torch.Tensor) and data.dtype == torch.float32, (type(data), data.dtype)
            assert context.system_properties["gpu_id"] is None or torch.cuda.is_available()
            with torch.inference_mode():
                return torch.softmax(model(data), dim=1)
        """,
    )
    out = ServedModel.load(PyTorchHandler(), str(model_dir)).invoke(req(json.dumps(X_TEST.tolist())))
    want = torch.softmax(torch.from_numpy(expected(net)), dim=1).numpy()
    np.testing.assert_allclose(json.loads(out.body), want, rtol=1e-5, atol=1e-6)


def test_load_errors(tmp_path: Path, net: torch.nn.Module) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="model.pt"):
        ServedModel.load(PyTorchHandler(), str(empty))
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    torch.save(net.state_dict(), checkpoint / "model.pt")
    with pytest.raises(ModelLoadError, match="torch.save checkpoint") as info:
        ServedModel.load(PyTorchHandler(), str(checkpoint))
    assert "model_fn" in info.value.message
    assert_clean(info.value.message)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.pt").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="model.pt") as info:
        ServedModel.load(PyTorchHandler(), str(garbage))
    assert_clean(info.value.message)
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.pt2").write_bytes(b"x")
    (two / "b.pt2").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="several .pt2"):
        ServedModel.load(PyTorchHandler(), str(two))


def test_class_attributes_and_device() -> None:
    cls = handler_class("pytorch")
    assert cls is PyTorchHandler and cls.default_workers == 1 and "torch" in cls.preload_modules
    handler = PyTorchHandler()
    assert handler.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
def test_cuda_load_predict_unload_frees_memory(tmp_path: Path, net: torch.nn.Module) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the CUDA path of the PyTorch handler was NOT tested")
    handler = PyTorchHandler()
    served = ServedModel.load(handler, str(save(net, tmp_path / "m", "torchscript model.pt")))
    assert handler.gpu_id == 0
    assert next(served.model.parameters()).device.type == "cuda"
    out = served.invoke(req(npy(X_TEST), "application/x-npy", "application/x-npy"))
    np.testing.assert_allclose(np.load(io.BytesIO(out.body)), expected(net), rtol=1e-4, atol=1e-4)
    before = torch.cuda.memory_allocated()
    served.unload()
    assert torch.cuda.memory_allocated() < before
