"""PyTorch parity for the containers and layers of test_layers.py: outputs, input and
parameter gradients (weights copied from torch), state_dict keys and round trips, and
nn.init's fans against torch's."""
import numpy as np
import pytest

import pycore.nn as nn

torch = pytest.importorskip("torch")

TOL = dict(rtol=1e-4, atol=1e-5)  # float32


def to_numpy_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def check_parity(ours, ref, x, rng):
    """Same output, input gradient and parameter gradients for one forward and backward."""
    ours.load_state_dict(to_numpy_state(ref))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = ref(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(ours.backward(gy), xt.grad.numpy(), **TOL)
    torch_params = dict(ref.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(torch_params)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), **TOL, err_msg=name)
    for name, value in to_numpy_state(ref).items():  # running statistics after the step
        np.testing.assert_allclose(ours.state_dict()[name], value, **TOL, err_msg=name)


def randomise(ref, rng):
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(np.float32)))


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on its own padded copy
@pytest.mark.parametrize("make, shape", [
    (lambda m: m.BatchNorm1d(3), (8, 3)),
    (lambda m: m.BatchNorm1d(3, momentum=None), (4, 3, 5)),
    (lambda m: m.LayerNorm((3, 4)), (2, 5, 3, 4)),
    (lambda m: m.LayerNorm(4, elementwise_affine=False), (6, 4)),
    (lambda m: m.GELU(), (5, 6)),
    (lambda m: m.GELU(approximate="tanh"), (5, 6)),
    (lambda m: m.SiLU(), (5, 6)),
    (lambda m: m.AdaptiveAvgPool2d(1), (2, 3, 5, 6)),
    (lambda m: m.AdaptiveAvgPool2d((3, 4)), (2, 3, 7, 5)),
    (lambda m: m.AdaptiveMaxPool2d((2, 3)), (2, 3, 7, 5)),
    (lambda m: m.Identity(), (3, 4)),
    (lambda m: m.Conv1d(4, 6, 3), (2, 4, 11)),
    (lambda m: m.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2), (2, 4, 12)),
    (lambda m: m.Conv1d(4, 2, 4, padding="same", bias=False), (3, 4, 7)),
], ids=lambda v: "" if callable(v) else str(v))
def test_layer_parity_with_torch(make, shape, rng):
    ref = make(torch.nn)
    randomise(ref, rng)
    ours = make(nn)
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    for _ in range(2):  # two training steps: the running statistics too
        check_parity(ours, ref, x, rng)
        x = x * 0.5 + 1
    ours.eval()
    ref.eval()
    np.testing.assert_allclose(ours(x), ref(torch.from_numpy(x)).detach().numpy(), **TOL)


def test_containers_state_dict_keys_round_trip_with_torch(rng):
    def build(m):
        model = m.Module()
        model.blocks = m.ModuleList([m.Linear(4, 4), m.LayerNorm(4), m.BatchNorm1d(4)])
        model.heads = m.ModuleDict({"cls": m.Linear(4, 2), "skip": m.Identity()})
        return model

    torch.manual_seed(0)
    ref = build(torch.nn)
    ours = build(nn)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(to_numpy_state(ref))
    ref2 = build(torch.nn)
    ref2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    for k, v in ref2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref.state_dict()[k].numpy())


def test_init_fans_and_gains_match_torch():
    for shape in [(3, 5), (8, 4, 3, 3), (6, 2, 5), (2, 3, 1, 4, 4)]:
        assert nn.init.calculate_fan_in_and_fan_out(shape) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    for args in [("relu",), ("tanh",), ("leaky_relu", 0.3), ("leaky_relu",), ("selu",), ("conv2d",)]:
        assert nn.init.calculate_gain(*args) == pytest.approx(torch.nn.init.calculate_gain(*args), rel=1e-12)
