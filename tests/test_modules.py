"""The Module contract end to end: a small CNN and a composite module against PyTorch,
state_dict round trips, dtype handling and the container."""
import numpy as np
import pytest

import pycore
from pycore import nn, optim

torch = pytest.importorskip("torch")


def small_cnn(dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 2, 5, dtype=dtype),
    )


def torch_small_cnn():
    tn = torch.nn
    return tn.Sequential(
        tn.Conv2d(1, 4, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2),
        tn.Conv2d(4, 6, 3), tn.ReLU(), tn.MaxPool2d(2),
        tn.Flatten(), tn.Linear(6 * 2 * 2, 5),
    ).double()


def test_small_cnn_sgd_steps_match_pytorch():
    """conv-relu-pool-conv-relu-pool-flatten-linear, 5 SGD(momentum) steps from the same
    start: the same losses and the same weights as PyTorch."""
    rng = np.random.default_rng(0)
    ours = small_cnn(np.float64)
    theirs = torch_small_cnn()
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    opt = optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    ours.requires_input_grad = False
    for step in range(5):
        x = rng.standard_normal((8, 1, 12, 12))
        y = rng.integers(0, 5, size=8)
        opt.zero_grad()
        loss = loss_fn(ours(x), y)
        assert ours.backward(loss_fn.backward()) is None
        opt.step()
        topt.zero_grad()
        tloss = tloss_fn(theirs(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-10, abs=1e-12), step
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name], value.numpy(), rtol=1e-9, atol=1e-11, err_msg=name)


class Residual(nn.Module):
    """The hand-written composite of docs/guides/modules.md (ResidualByHand, the low-level path):
    y = relu(x + linear2(relu(linear1(x))))."""

    def __init__(self, features, dtype=np.float32):
        super().__init__(dtype)
        self.linear1, self.relu1 = nn.Linear(features, features, dtype=dtype), nn.ReLU()
        self.linear2, self.relu2 = nn.Linear(features, features, dtype=dtype), nn.ReLU()

    def forward(self, x):
        return self.relu2(x + self.linear2(self.relu1(self.linear1(x))))

    def backward(self, grad):
        g = self.relu2.backward(grad)
        g_branch = self.linear1.backward(self.relu1.backward(self.linear2.backward(g)))
        return g + g_branch


def test_composite_module_gradients_match_autograd():
    block = Residual(6, dtype=np.float64)
    names = [n for n, _ in block.named_parameters()]
    assert names == ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    sd = {k: torch.tensor(v) for k, v in block.state_dict().items()}
    x = np.random.default_rng(1).standard_normal((3, 6))
    g = np.random.default_rng(2).standard_normal((3, 6))
    y = block(x)
    gx = block.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    w1, b1, w2, b2 = (sd[k].clone().requires_grad_() for k in names)
    ty = torch.relu(tx + torch.relu(tx @ w1.T + b1) @ w2.T + b2)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, t in zip(names, (w1, b1, w2, b2)):
        np.testing.assert_allclose(dict(block.named_parameters())[name].grad, t.grad.numpy(),
                                   rtol=1e-10, atol=1e-12, err_msg=name)


def test_torch_state_dict_loads_and_gives_the_same_outputs():
    theirs = torch_small_cnn().float()
    ours = small_cnn()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(3).standard_normal((4, 1, 12, 12)).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.eval()(x), expected, rtol=1e-5, atol=1e-6)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_load_state_dict_casts_and_to_changes_dtype():
    model = small_cnn()
    sd64 = {k: v.astype(np.float64) for k, v in small_cnn(np.float64).state_dict().items()}
    model.load_state_dict(sd64)
    assert all(v.dtype == np.float32 for v in model.state_dict().values())
    x = np.zeros((2, 1, 12, 12), np.float64)
    with pytest.raises(TypeError, match="float64"):
        model(x)
    model.to(np.float64)
    assert model(x).dtype == np.float64
    assert all(p.grad.dtype == np.float64 for p in model.parameters())


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    model = small_cnn()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = dict(before)
    del bad["0.weight"]
    bad["9.weight"] = np.zeros(3)
    bad["3.bias"] = np.zeros(7)
    bad["7.bias"] = np.full(5, 9.0)
    with pytest.raises(nn.StateDictError) as info:
        model.load_state_dict(bad)
    message = str(info.value)
    for part in ("missing key: 0.weight", "unexpected key: 9.weight", "size mismatch for 3.bias"):
        assert part in message
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    missing, unexpected = model.load_state_dict({"7.bias": np.ones(5)}, strict=False)
    assert "0.weight" in missing and unexpected == []
    np.testing.assert_array_equal(model[7].bias.data, 1.0)


def test_zero_grad_train_eval_and_sequential_indexing():
    model = small_cnn()
    x = np.random.default_rng(4).standard_normal((2, 1, 12, 12)).astype(np.float32)
    y = model(x)
    model.backward(np.ones_like(y))
    assert any(np.any(p.grad != 0) for p in model.parameters())
    model.zero_grad()
    assert all(np.all(p.grad == 0) for p in model.parameters())
    assert all(m.training for m in model.modules())
    model.eval()
    assert not any(m.training for m in model.modules())
    assert len(model) == 8 and isinstance(model[0], nn.Conv2d)
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_manual_seed_makes_initialisation_reproducible():
    pycore.manual_seed(7)
    a = small_cnn().state_dict()
    pycore.manual_seed(7)
    b = small_cnn().state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
