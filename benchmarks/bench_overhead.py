"""Per-call overhead: models so small that the Python work around the kernels is most of
the time (issue 9).

- Linear(16,16)-ReLU-Linear(16,4) at batch 1 and 8, forward and forward+backward, against
  the same model (same weights) in PyTorch. Target: >= 1.0x.
- Batch-1 LeNet-5 inference latency (eval, no_grad) against PyTorch. Target: >= 1.5x.

Outputs are checked against PyTorch's before anything is timed. No numpy peer: the
numbers measure the libraries' call paths, which a numpy version would not have.
"""
import numpy as np

try:
    from . import harness
except ImportError:  # run as a script from benchmarks/
    import harness

import pycore
from pycore import nn
from pycore.examples.lenet import build_lenet

try:
    import torch
except ImportError:
    torch = None

TINY_BATCHES = (1, 8)


def _torch_copy(model, torch_model):
    """torch_model with model's weights (same layer names, so the state_dicts line up)."""
    torch_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    return torch_model


def _tiny_cases(rng, threads):
    pycore.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    model.requires_input_grad = False
    tnn = torch.nn
    tmodel = _torch_copy(model, tnn.Sequential(tnn.Linear(16, 16), tnn.ReLU(), tnn.Linear(16, 4)))
    out = []
    for batch in TINY_BATCHES:
        x = rng.standard_normal((batch, 16)).astype(np.float32)
        grad = rng.standard_normal((batch, 4)).astype(np.float32)
        xt, gradt = torch.from_numpy(x), torch.from_numpy(grad)
        np.testing.assert_allclose(model(x), tmodel(xt).detach().numpy(), rtol=1e-5, atol=1e-6)

        def pycore_train(x=x, grad=grad):
            model(x)
            model.backward(grad)

        def torch_train(xt=xt, gradt=gradt):
            tmodel.zero_grad(set_to_none=True)  # what backward adds into, as pycore's zero_grad
            tmodel(xt).backward(gradt)

        shape = f"Linear16-ReLU-Linear4 batch {batch}"
        out.append(harness.Case(op="tiny model fwd", shape=shape, threads=threads,
                                pycore=lambda x=x: model(x), torch=lambda xt=xt: tmodel(xt).detach(),
                                items=float(batch), items_name="samples/s"))
        out.append(harness.Case(op="tiny model fwd+bwd", shape=shape, threads=threads,
                                pycore=pycore_train, torch=torch_train, items=float(batch), items_name="samples/s"))
    return out


def _lenet_inference_case(rng, threads):
    pycore.manual_seed(0)
    model = build_lenet().eval()
    tnn = torch.nn
    tmodel = _torch_copy(model, tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5), tnn.ReLU(),
        tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(),
        tnn.Linear(84, 10))).eval()
    x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(x)

    def pycore_infer():
        with pycore.no_grad():
            return model(x)

    def torch_infer():
        with torch.no_grad():
            return tmodel(xt)

    np.testing.assert_allclose(pycore_infer(), torch_infer().numpy(), rtol=1e-4, atol=1e-5)
    return harness.Case(op="LeNet-5 inference latency", shape="(1, 1, 28, 28) eval no_grad", threads=threads,
                        pycore=pycore_infer, torch=torch_infer, items=1.0, items_name="images/s")


def cases(quick=False):
    if torch is None:
        return []  # every case here is a comparison with PyTorch
    rng = np.random.default_rng(0)
    out = []
    for threads in (1,) if quick else (1, 2):
        out += _tiny_cases(rng, threads)
        out.append(_lenet_inference_case(rng, threads))
    return out
