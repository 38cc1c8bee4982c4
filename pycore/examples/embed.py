"""Serve a trained LeNet-5 from another application: load once, predict(batch) many times.

    python -m pycore.examples.lenet --save lenet.safetensors     # train and save
    python -m pycore.examples.embed --model lenet.safetensors    # this demo

In your app:

    from pycore.examples.embed import DigitClassifier
    clf = DigitClassifier("lenet.safetensors")       # validates the file; no code in it runs
    labels = clf.predict(images)                      # images (N, 28, 28) uint8 / [0, 1] floats, or (N, 8, 8)
    probs = clf.predict_proba(images)                 # (N, 10), rows sum to 1

predict runs the model in eval mode under pycore.no_grad(): no activation is kept for a
backward, so serving does not grow memory, and several threads may call predict at once
(no_grad is per thread; the model's weights are only read).
"""
import argparse
import sys
import time

import numpy as np

import pycore
from pycore.examples.lenet import ARCH, build_lenet, to_network_input


class DigitClassifier:
    """A LeNet-5 checkpoint written by `python -m pycore.examples.lenet --save PATH`."""

    def __init__(self, path):
        state_dict, meta = pycore.load(path)
        if meta.get("arch") != ARCH:
            raise ValueError(f"{path}: expected a {ARCH} checkpoint from pycore.examples.lenet, "
                             f"got arch={meta.get('arch')!r}")
        self.model = build_lenet()
        self.model.load_state_dict(state_dict)
        self.model.eval()
        self.mean, self.std = float(meta["mean"]), float(meta["std"])
        self.metadata = meta

    def logits(self, images):
        """(N, 10) float32 logits for a batch of images (see to_network_input for the formats)."""
        x = to_network_input(images, self.mean, self.std)
        with pycore.no_grad():
            return self.model(x)

    def predict_proba(self, images):
        """(N, 10) class probabilities (softmax of the logits)."""
        z = self.logits(images).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, images):
        """(N,) int64 predicted digits."""
        return self.logits(images).argmax(axis=1).astype(np.int64)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.embed", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, metavar="PATH", help="a checkpoint from pycore.examples.lenet --save")
    p.add_argument("--batches", type=int, default=20, help="predict calls to time (and to show memory is flat)")
    args = p.parse_args(argv)
    try:
        clf = DigitClassifier(args.model)
    except FileNotFoundError:
        sys.exit(f"no model at {args.model}: train one with  python -m pycore.examples.lenet --save {args.model}")
    meta = clf.metadata
    print(f"loaded {args.model}: LeNet-5 trained on {meta['dataset']} for {meta['epoch']} epochs "
          f"(test accuracy then {100 * meta['test_accuracy']:.2f}%)")
    if meta["dataset"] == "mnist":
        _, (images, labels) = pycore.datasets.load_mnist()
    else:
        images, labels = pycore.datasets.load_digits()
    batch, truth = images[:64], labels[:64]
    print("predicted:", " ".join(map(str, clf.predict(batch[:16]))))
    print("true:     ", " ".join(map(str, truth[:16])))
    started = time.perf_counter()
    for _ in range(args.batches):
        predicted = clf.predict(batch)
    per_call = (time.perf_counter() - started) / max(args.batches, 1)
    print(f"batch of {len(batch)}: {1000 * per_call:.2f} ms per predict call, "
          f"accuracy on it {100 * np.mean(predicted == truth):.1f}%")
    return clf


if __name__ == "__main__":
    main()
