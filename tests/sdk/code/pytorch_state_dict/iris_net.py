"""A PyTorch serving script in the PyTorch toolkit's style: model_fn rebuilds the network and loads a
state dict; predict_fn answers softmax probabilities."""

import json
import os

import torch
from torch import nn


class IrisNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.layers(x)


def model_fn(model_dir):
    net = IrisNet()
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        net.load_state_dict(torch.load(f, map_location="cpu"))
    return net.eval()


def input_fn(request_body, content_type):
    if content_type != "application/json":
        raise ValueError(f"iris_net.py takes application/json, not {content_type}")
    return torch.tensor(json.loads(request_body), dtype=torch.float32)


def predict_fn(input_data, model):
    with torch.no_grad():
        return torch.softmax(model(input_data), dim=1)


def output_fn(prediction, accept):
    return json.dumps({"softmax": prediction.tolist()}), "application/json"
