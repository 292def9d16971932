"""A user script whose predict_fn streams: it returns a generator of tokens, one character each
(docs/handlers.md, "Streaming"). The model is a character bigram table trained by the test
(tests/harness/token_model.py)."""

import json
import os

import torch


class BigramLM(torch.nn.Module):
    """Next-character logits from the current character."""

    def __init__(self, size):
        super().__init__()
        self.logits = torch.nn.Embedding(size, size)

    def forward(self, ids):
        return self.logits(ids)


def model_fn(model_dir):
    with open(os.path.join(model_dir, "vocab.json")) as f:
        vocab = json.load(f)
    model = BigramLM(len(vocab))
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    return model.eval(), vocab


def input_fn(body, content_type):
    request = json.loads(body)
    return request["prompt"], int(request.get("max_new_tokens", 16)), request.get("fail_after")


def predict_fn(data, model_and_vocab):
    model, vocab = model_and_vocab
    prompt, count, fail_after = data

    def tokens():
        current = vocab.index(prompt[-1])
        with torch.no_grad():
            for index in range(count):
                if index == fail_after:  # a test's way to fail after some tokens went out
                    raise RuntimeError(f"generation failed after {index} tokens")
                current = int(model(torch.tensor([current])).argmax(dim=-1))
                yield vocab[current]

    return tokens()
