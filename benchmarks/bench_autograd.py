"""What the tape costs (pycore/autograd.py): LeNet-5 forward+backward written three ways,
timed interleaved at 1 thread, batch 64 and batch 1 (where Python overhead shows most):

  sequential  nn.Sequential (its conv + ReLU + pool steps fused)
  by hand     a Module calling the same layers one by one, with a hand-written backward
  tape        the same Module with forward only: backward replayed from the tape

tape / by hand is the recording and replay overhead; tape / sequential is what writing a
model as a composite costs against a Sequential (mostly the fusion a composite of separate
calls does not get). Gradients are checked equal before timing.

    python benchmarks/bench_autograd.py          # prints the ratios
    python benchmarks/run.py --only autograd     # the tape against PyTorch
"""
import numpy as np

try:
    from . import harness
except ImportError:  # run as a script from benchmarks/
    import harness

import pycore
from pycore import functional as F
from pycore import nn
from pycore.examples.lenet import build_lenet

try:
    import torch
except ImportError:
    torch = None


class LeNetTape(nn.Module):
    """LeNet-5 on the layers of a build_lenet() Sequential, forward only."""

    def __init__(self, layers):
        super().__init__()
        (self.conv1, self.relu1, self.pool1, self.conv2, self.relu2, self.pool2, _,
         self.fc1, self.relu3, self.fc2, self.relu4, self.fc3) = layers

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(F.flatten(x, 1)))
        return self.fc3(self.relu4(self.fc2(x)))


class LeNetByHand(LeNetTape):
    """The same calls with the backward written out (the low-level path)."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        self._save_for_backward(x.shape)
        x = self.relu3(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc3(self.relu4(self.fc2(x)))

    def backward(self, grad_output):
        (shape,) = self._pop_saved()
        g = self.fc1.backward(self.relu3.backward(self.fc2.backward(self.relu4.backward(
            self.fc3.backward(grad_output)))))
        g = self.conv2.backward(self.relu2.backward(self.pool2.backward(g.reshape(shape))))
        return self.conv1.backward(self.relu1.backward(self.pool1.backward(g)))


def _models():
    pycore.manual_seed(0)
    sequential = build_lenet()
    layers = list(sequential.children())
    models = {"sequential": sequential, "by hand": LeNetByHand(layers), "tape": LeNetTape(layers)}
    for m in models.values():
        m.requires_input_grad = False
    return models


def _step(model, x, grad):
    def run():
        model(x)
        model.backward(grad)
    return run


def _check_same_gradients(models, x, grad):
    reference = None
    for name, model in models.items():
        model.zero_grad()
        model(x)
        model.backward(grad)
        grads = [p.grad.copy() for p in model.parameters()]
        if reference is None:
            reference = grads
        for g, r in zip(grads, reference):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=name)


def cases(quick=False):
    if torch is None:
        return []
    rng = np.random.default_rng(0)
    models = _models()
    tnn = torch.nn
    tmodel = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(),
        tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, 10))
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in models["sequential"].state_dict().items()})
    out = []
    for batch in (1, 64):
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        grad = rng.standard_normal((batch, 10)).astype(np.float32)
        xt, gradt = torch.from_numpy(x), torch.from_numpy(grad)

        def torch_step(xt=xt, gradt=gradt):
            tmodel.zero_grad(set_to_none=True)
            tmodel(xt).backward(gradt)

        out.append(harness.Case(op="LeNet-5 composite (tape) fwd+bwd", shape=f"batch {batch}", threads=1,
                                pycore=_step(models["tape"], x, grad), torch=torch_step, items=float(batch),
                                items_name="samples/s"))
    return out


def main():
    pycore.set_num_threads(1)
    rng = np.random.default_rng(0)
    models = _models()
    for batch in (1, 64):
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        grad = rng.standard_normal((batch, 10)).astype(np.float32)
        _check_same_gradients(models, x, grad)
        times = harness.time_interleaved({name: _step(m, x, grad) for name, m in models.items()}, repeats=15)
        print(f"LeNet-5 fwd+bwd, batch {batch}, 1 thread: " + ", ".join(
            f"{name} {1e3 * t:.3f} ms" for name, t in times.items())
            + f"; tape / by hand {times['tape'] / times['by hand']:.3f}, "
              f"tape / sequential {times['tape'] / times['sequential']:.3f}")


if __name__ == "__main__":
    main()
