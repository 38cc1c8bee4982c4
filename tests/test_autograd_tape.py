"""The tape without PyTorch: the silent-gradient guard, no_grad, the backward contract of
composites, float64 finite differences (pycore.testing.gradcheck) and the merge ops
against numpy."""
import threading

import numpy as np
import pytest

import pycore
from pycore import functional as F
from pycore import nn
from pycore.testing import gradcheck

F64 = np.float64


class Residual(nn.Module):
    def __init__(self, features=4, dtype=F64):
        super().__init__()
        self.linear = nn.Linear(features, features, dtype=dtype)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(F.add(x, self.linear(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Residual()
        self.head = nn.Linear(4, 2, dtype=F64)

    def forward(self, x):
        return self.head(self.block(x))


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- never a silent wrong gradient ---------------------------------------------------------

def test_plain_numpy_sum_raises_naming_the_layer_and_the_fix():
    class Wrong(Residual):
        def forward(self, x):
            return self.relu(x + self.linear(x))

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(4, 4, dtype=F64))
            self.block = Wrong()

        def forward(self, x):
            return self.block(self.inner(x))

    with pytest.raises(TypeError, match=r"layer 'relu' \(ReLU\).*F\.add instead of \+.*F\.constant"):
        Wrong()(randn(2, 4))
    with pytest.raises(TypeError, match=r"Wrong\.forward: layer 'relu' \(ReLU\)"):
        Outer()(randn(2, 4))  # named inside its own composite, nested
    with pytest.raises(TypeError, match=r"F\.mul received an array of shape \(2, 4\)"):
        class WrongOp(Residual):
            def forward(self, x):
                return F.mul(self.linear(x), x[:, ::-1])  # numpy slicing: not recorded
        WrongOp()(randn(2, 4))


def test_returning_an_untracked_array_raises():
    class Returns(Residual):
        def forward(self, x):
            return self.linear(x) * 2.0

    with pytest.raises(TypeError, match=r"Returns\.forward's return value received .* output 0"):
        Returns()(randn(2, 4))


def test_parameter_data_and_numpy_scalars_are_refused_constants_and_integers_pass():
    class UsesData(Residual):
        def forward(self, x):
            return F.mul(self.linear(x), self.linear.weight.data[0])

    with pytest.raises(TypeError, match="F.constant"):
        UsesData()(randn(2, 4))

    class UsesScalar(Residual):
        def forward(self, x):
            h = self.linear(x)
            return F.mul(h, h.mean())  # a numpy float scalar computed by numpy

    with pytest.raises(TypeError, match="numpy"):
        UsesScalar()(randn(2, 4))

    class Fine(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 4, dtype=F64)
            self.offset = np.arange(4.0)

        def forward(self, tokens):  # integer input, constant float array, Python number
            return F.mul(F.add(self.embed(tokens), F.constant(self.offset)), 0.5)

    model = Fine()
    tokens = np.array([[1, 2], [3, 4]])
    y = model(tokens)
    assert model.backward(np.ones_like(y)) is None  # integers have no gradient
    expected = np.zeros((5, 4))
    np.add.at(expected, tokens.ravel(), 0.5)
    np.testing.assert_allclose(model.embed.weight.grad, expected)


# -- no_grad, the contract ------------------------------------------------------------------

def test_no_grad_records_nothing():
    model = Net()
    with pycore.no_grad():
        y = model(randn(3, 4))
    assert y.flags.writeable
    assert all(m.__dict__.get("_saved") is None for m in model.modules())
    with pytest.raises(RuntimeError, match="no forward to differentiate"):
        model.backward(np.ones((3, 2)))


def test_a_no_grad_block_inside_forward_gives_constants():
    class Teacher(nn.Module):
        def __init__(self):
            super().__init__()
            self.teacher, self.student = nn.Linear(4, 4, dtype=F64), nn.Linear(4, 4, dtype=F64)

        def forward(self, x):
            with pycore.no_grad():
                target = self.teacher(x)
            return F.mul(self.student(x), target)

    model, x = Teacher(), randn(3, 4)
    y = model(x)
    gy = randn(3, 4, seed=1)
    gx = model.backward(gy)
    target = x @ model.teacher.weight.data.T + model.teacher.bias.data
    np.testing.assert_allclose(model.student.weight.grad, (gy * target).T @ x)
    np.testing.assert_allclose(gx, (gy * target) @ model.student.weight.data)
    assert not model.teacher.weight.grad.any()


def test_backward_contract():
    model, x = Net(), randn(3, 4)
    with pytest.raises(RuntimeError, match="no forward"):
        model.backward(np.ones((3, 2)))
    model(x)
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(3, 3\), expected the output's \(3, 2\)"):
        model.backward(np.ones((3, 3)))
    model(x)
    with pytest.raises(TypeError, match="only a scalar output"):
        model.backward()
    model(x)
    model.backward(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match="no forward"):
        model.backward(np.ones((3, 2)))  # one backward per forward


def test_requires_input_grad_false_skips_the_input_gradient_only():
    x, gy = randn(3, 4), randn(3, 2, seed=2)
    reference = Net()
    reference(x)
    reference.backward(gy)
    model = Net()
    model.load_state_dict(reference.state_dict())
    model.requires_input_grad = False
    model(x)
    assert model.backward(gy) is None
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, err_msg=name)


def test_which_classes_get_the_automatic_backward():
    class Own(Residual):
        def backward(self, grad_output):
            return grad_output

    class FromOwn(Own):
        def forward(self, x):
            return x

    assert Residual._auto_backward and Net._auto_backward
    assert not Own._auto_backward and not FromOwn._auto_backward  # a base defines backward
    assert not nn.Linear._auto_backward and not nn.Sequential._auto_backward


def test_threads_record_separately():
    models = [Net() for _ in range(4)]
    x = randn(3, 4)
    expected = []
    for m in models:
        m(x)
        m.backward(np.ones((3, 2)))
        expected.append(m.block.linear.weight.grad.copy())
        m.zero_grad()
    errors = []

    def run(m):
        try:
            for _ in range(20):
                m.zero_grad()
                m(x)
                m.backward(np.ones((3, 2)))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for m, e in zip(models, expected):
        np.testing.assert_allclose(m.block.linear.weight.grad, e, rtol=1e-12)


# -- finite differences ------------------------------------------------------------------

class Composite(nn.Module):
    """Two inputs, nesting, a shared ReLU, a Sequential, BatchNorm in train mode, merge ops."""

    def __init__(self):
        super().__init__()
        self.block = Residual(3)
        self.seq = nn.Sequential(nn.Linear(3, 3, dtype=F64), nn.Tanh())
        self.norm = nn.BatchNorm1d(3, dtype=F64)
        self.relu = nn.ReLU()
        self.scale = nn.Parameter(np.array([0.5, -1.0, 2.0]))

    def forward(self, a, b):
        h = self.block(self.norm(a))
        parts = F.split(self.seq(F.cat([h, b], dim=0)), [a.shape[0], b.shape[0]], dim=0)
        mixed = F.mul(F.add(self.relu(parts[0]), F.mean(parts[1], dim=0, keepdim=True)), self.scale)
        return F.sum(F.reshape(self.relu(mixed), (-1, 3)), dim=1)


def test_gradcheck_on_a_composite_in_float64():
    assert gradcheck(Composite(), (randn(4, 3), randn(2, 3, seed=1)))


def test_gradcheck_on_the_example_resnet():
    from pycore.examples.resnet import ResNet

    assert gradcheck(ResNet((2, 3, 3), dtype=F64), randn(2, 1, 5, 5), atol=1e-6, rtol=1e-4)


# -- merge ops: values against numpy, arguments ------------------------------------------

def test_merge_ops_outside_a_recording_are_numpy():
    x, y = randn(2, 3, 4), randn(3, 4, seed=1)
    np.testing.assert_array_equal(F.add(x, y, alpha=2.0), x + 2.0 * y)
    np.testing.assert_array_equal(F.sub(x, y), x - y)
    np.testing.assert_array_equal(F.mul(x, 3), x * 3)
    np.testing.assert_array_equal(F.div(x, y), x / y)
    np.testing.assert_array_equal(F.cat([x, x], dim=-1), np.concatenate([x, x], axis=-1))
    np.testing.assert_array_equal(F.stack([y, y], dim=2), np.stack([y, y], axis=2))
    assert [p.shape for p in F.split(x, 2, dim=2)] == [(2, 3, 2), (2, 3, 2)]
    assert [p.shape for p in F.chunk(np.zeros((7, 2)), 3)] == [(3, 2), (3, 2), (1, 2)]  # torch.chunk's rule
    assert [p.shape for p in F.chunk(np.zeros((4, 2)), 3)] == [(2, 2), (2, 2)]
    np.testing.assert_array_equal(F.flatten(x, 1), x.reshape(2, 12))
    np.testing.assert_array_equal(F.flatten(x), x.ravel())
    np.testing.assert_array_equal(F.mean(x, dim=(0, 2)), x.mean(axis=(0, 2)))
    assert F.sum(x).shape == () and np.isclose(F.sum(x), x.sum())
    np.testing.assert_array_equal(F.select(x, 1, -1), x[:, -1])
    np.testing.assert_array_equal(F.narrow(x, 2, 1, 2), x[:, :, 1:3])
    np.testing.assert_array_equal(F.permute(x, (2, 0, 1)), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(F.transpose(x, 0, 2), x.swapaxes(0, 2))
    assert F.constant(x) is x


@pytest.mark.parametrize("call, error, message", [
    (lambda x: F.add(x, "1"), TypeError, "add: other: expected a numpy array, a number or a Parameter"),
    (lambda x: F.add(x, 1, alpha=None), TypeError, "alpha"),
    (lambda x: F.cat(x), TypeError, "cat: tensors: expected a tuple or list"),
    (lambda x: F.cat([x, x[:, :2]], dim=0), ValueError, r"cat: tensors\[1\] has shape \(2, 2\)"),
    (lambda x: F.stack([x, x.T]), ValueError, r"stack: tensors\[1\]"),
    (lambda x: F.split(x, [1, 1], dim=1), ValueError, "sum to 2, but dim 1 has length 3"),
    (lambda x: F.split(x, 0), ValueError, "split_size_or_sections"),
    (lambda x: F.chunk(x, 0), ValueError, "chunks"),
    (lambda x: F.reshape(x, (4, 2)), ValueError, r"cannot reshape an array of shape \(2, 3\)"),
    (lambda x: F.flatten(x, 1, 0), ValueError, "start_dim"),
    (lambda x: F.mean(x, dim=2), ValueError, r"dim: expected a dimension in \[-2, 1\]"),
    (lambda x: F.sum(x, dim=(0, -2)), ValueError, "twice"),
    (lambda x: F.sum(x.astype(np.int64)), TypeError, "float array"),
    (lambda x: F.select(x, 1, 3), IndexError, "index 3 is out of range for dim 1 of length 3"),
    (lambda x: F.narrow(x, 1, 2, 2), ValueError, "exceeds"),
    (lambda x: F.permute(x, (0, 0)), ValueError, "not a permutation"),
    (lambda x: F.transpose(x, 0, 5), ValueError, "dim1"),
    (lambda x: F.constant([1.0]), TypeError, "constant: input: expected a numpy array"),
])
def test_merge_op_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(randn(2, 3))


def test_a_backward_that_drops_a_needed_gradient_raises():
    """MSELoss's backward returns the gradient of its input only: a target that needs one
    (it comes from the model) is an error, not a silently dropped term; a constant is fine."""

    class Distill(nn.Module):
        def __init__(self, constant_target):
            super().__init__()
            self.student, self.teacher = nn.Linear(3, 2, dtype=F64), nn.Linear(3, 2, dtype=F64)
            self.loss, self.constant_target = nn.MSELoss(), constant_target

        def forward(self, x):
            target = self.teacher(x)
            return self.loss(self.student(x), F.constant(target) if self.constant_target else target)

    model = Distill(constant_target=False)
    model(randn(4, 3))
    with pytest.raises(RuntimeError, match=r"MSELoss\.backward returned the gradient of its first argument only"):
        model.backward()
    model = Distill(constant_target=True)
    x = randn(4, 3)
    loss = model(x)
    model.backward()
    diff = (x @ model.student.weight.data.T + model.student.bias.data) - (
        x @ model.teacher.weight.data.T + model.teacher.bias.data)
    assert np.isclose(loss, np.mean(diff ** 2))
    np.testing.assert_allclose(model.student.weight.grad, (2 * diff / diff.size).T @ x)
    assert not model.teacher.weight.grad.any()


def test_fit_distributed_in_a_world_of_one_trains_a_two_input_composite_as_fit():
    """fit(distributed=True) wraps the model in DistributedDataParallel, whose call must go
    through Module.__call__ so that the composite's forward is recorded."""
    import pycore.distributed as dist
    from pycore.data import DataLoader

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4, dtype=F64), nn.Linear(2, 4, dtype=F64)
            self.head = nn.Linear(4, 2, dtype=F64)

        def forward(self, a, b):
            return self.head(F.mul(self.a(a), self.b(b)))

    rng = np.random.default_rng(0)
    a, b, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2)), rng.integers(0, 2, 12)
    states = []
    for distributed in (False, True):
        pycore.manual_seed(0)
        model = TwoInputs()
        sampler = dist.DistributedSampler(12, shuffle=False) if distributed else None
        loader = DataLoader(a, b, y, batch_size=4, sampler=sampler)
        pycore.train.fit(model, nn.CrossEntropyLoss(), pycore.optim.SGD(model.parameters(), lr=0.1), loader, 2,
                         verbose=0, distributed=distributed)
        states.append(model.state_dict())
    for key in states[0]:
        np.testing.assert_allclose(states[1][key], states[0][key], rtol=1e-12, err_msg=key)
