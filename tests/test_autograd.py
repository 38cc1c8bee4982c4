"""Automatic backward of forward-only models against PyTorch 2.13 (weights copied): the
output and every gradient, of the inputs and of each parameter, in float64.

The models cover the tape's cases: residual blocks (with and without a downsampling
shortcut, train mode), two inputs, one Linear and one ReLU called twice, every merge op,
composites inside composites, a Sequential with fused layers, fan-out, an LSTM (unused
final state, a tracked initial state) and an LSTMCell loop, a module with its own
backward, and fit() on a two-input loader.
"""
import numpy as np
import pytest

import pycore
from pycore import functional as F
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.examples.resnet import BasicBlock, ResNet, torch_resnet
from pycore.train import fit

torch = pytest.importorskip("torch")
tnn = torch.nn

F64 = np.float64


def copy_weights(model, torch_model):
    torch_model.double()  # first: float64 weights must not pass through float32
    torch_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})


def assert_parity(model, torch_model, inputs, grad_outputs=None, seed=1):
    """Run both models on `inputs` (a tuple of float64 arrays), backpropagate the same random
    output gradients and compare the outputs, the inputs' gradients and every parameter's."""
    copy_weights(model, torch_model)
    model.zero_grad()
    torch_model.zero_grad()
    out = model(*inputs)
    tins = [torch.tensor(x, requires_grad=True) for x in inputs]
    tout = torch_model(*tins)
    outs, touts = (out, tout) if isinstance(out, tuple) else ((out,), (tout,))
    assert len(outs) == len(touts)
    rng = np.random.default_rng(seed)
    grads = grad_outputs or tuple(rng.standard_normal(np.shape(o)) for o in outs)
    for o, t in zip(outs, touts):
        np.testing.assert_allclose(o, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    ginputs = model.backward(*grads)
    torch.autograd.backward([t for t, g in zip(touts, grads) if g is not None],
                            [torch.tensor(np.asarray(g)) for g in grads if g is not None])
    ginputs = ginputs if isinstance(ginputs, tuple) else (ginputs,)
    assert len(ginputs) == len(inputs)
    for g, t in zip(ginputs, tins):
        expected = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(g, expected, rtol=1e-9, atol=1e-11)
    torch_params = dict(torch_model.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert sorted(names) == sorted(torch_params)
    for name, p in model.named_parameters():
        expected = torch_params[name].grad
        expected = np.zeros(p.shape) if expected is None else expected.numpy()
        np.testing.assert_allclose(p.grad, expected, rtol=1e-9, atol=1e-11, err_msg=name)
    for key, value in model.state_dict().items():  # BatchNorm's running statistics moved alike
        np.testing.assert_allclose(value, torch_model.state_dict()[key].numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    return out


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# -- residual blocks and the example's ResNet -------------------------------------------------

class TorchBlock(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.shortcut = tnn.Identity() if stride == 1 and cin == cout else tnn.Sequential(
            tnn.Conv2d(cin, cout, 1, stride=stride, bias=False), tnn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@pytest.mark.parametrize("cin, cout, stride", [(4, 4, 1), (3, 6, 2)], ids=["identity", "downsample"])
def test_basic_block_train_mode(cin, cout, stride):
    block = BasicBlock(cin, cout, stride, dtype=F64)
    assert not any("backward" in vars(c) for c in type(block).__mro__[:-2])  # forward only
    assert_parity(block, TorchBlock(cin, cout, stride), (randn(2, cin, 9, 9),))


def test_resnet_two_steps_in_a_row():
    """The whole example model, twice (the second forward's tape replaces the first)."""
    model, torch_model = ResNet((4, 8, 8), dtype=F64), torch_resnet((4, 8, 8))
    assert_parity(model, torch_model, (randn(3, 1, 10, 10),))
    assert_parity(model, torch_model, (randn(3, 1, 10, 10, seed=5),), seed=7)


# -- inputs, outputs, sharing -----------------------------------------------------------------

class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 4, dtype=F64), nn.Linear(3, 4, dtype=F64)
        self.head = nn.Linear(8, 2, dtype=F64)
        self.act = nn.Tanh()

    def forward(self, a, b):
        return self.head(self.act(F.cat([self.a(a), self.b(b)], dim=1)))


class TorchTwoInputs(tnn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head, self.act = tnn.Linear(5, 4), tnn.Linear(3, 4), tnn.Linear(8, 2), tnn.Tanh()

    def forward(self, a, b):
        return self.head(self.act(torch.cat([self.a(a), self.b(b)], 1)))


def test_two_inputs_give_two_gradients():
    assert_parity(TwoInputs(), TorchTwoInputs(), (randn(6, 5), randn(6, 3, seed=1)))


class Shared(nn.Module):
    """One Linear and one ReLU, each called twice (and the ReLU a third time)."""

    def __init__(self):
        super().__init__()
        self.linear, self.relu = nn.Linear(6, 6, dtype=F64), nn.ReLU()

    def forward(self, x):
        h = self.relu(self.linear(x))
        return self.relu(F.add(self.linear(h), self.relu(x)))


class TorchShared(tnn.Module):
    def __init__(self):
        super().__init__()
        self.linear, self.relu = tnn.Linear(6, 6), tnn.ReLU()

    def forward(self, x):
        h = self.relu(self.linear(x))
        return self.relu(self.linear(h) + self.relu(x))


def test_shared_weights_and_reused_relu_accumulate():
    assert_parity(Shared(), TorchShared(), (randn(5, 6),))


class FanOut(nn.Module):
    """x read by three calls; h by two; two outputs, one read again for the other."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(4, 4, dtype=F64), nn.Linear(4, 4, dtype=F64), nn.Linear(4, 3, dtype=F64)
        self.sig = nn.Sigmoid()

    def forward(self, x):
        h = self.sig(self.l1(x))
        first = F.mul(h, self.l2(x))
        return first, self.l3(F.add(F.add(first, h), x))


class TorchFanOut(tnn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3, self.sig = tnn.Linear(4, 4), tnn.Linear(4, 4), tnn.Linear(4, 3), tnn.Sigmoid()

    def forward(self, x):
        h = self.sig(self.l1(x))
        first = h * self.l2(x)
        return first, self.l3(first + h + x)


def test_fan_out_sums_gradients_and_outputs_take_a_tuple():
    assert_parity(FanOut(), TorchFanOut(), (randn(3, 4),))


def test_an_output_without_gradient():
    model = FanOut()
    assert_parity(model, TorchFanOut(), (randn(3, 4),), grad_outputs=(None, randn(3, 3, seed=4)))


# -- every merge op ------------------------------------------------------------------------

class EveryOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 8, dtype=F64)
        self.gamma = nn.Parameter(np.linspace(0.5, 1.5, 8))
        self.mask = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.0, 1.0, 3.0])  # a fixed array: F.constant

    def forward(self, x, seq):                          # x (N, 6), seq (N, T, 6)
        h = self.proj(x)                                # (N, 8)
        h = F.mul(h, self.gamma)                        # a learnable scale, broadcast
        h = F.mul(h, F.constant(self.mask))
        a, b = F.chunk(h, 2, dim=1)                     # (N, 4) each
        c, d, e = F.split(h, [3, 1, 4], dim=1)
        s = F.sub(F.add(a, b, alpha=0.5), F.div(e, F.add(F.mul(d, d), 1.0)))
        st = F.stack([s, a], dim=1)                     # (N, 2, 4)
        flat = F.flatten(st, 1)                         # (N, 8)
        r = F.reshape(F.transpose(F.reshape(flat, (-1, 4, 2)), 1, 2), (-1, 8))
        p = F.permute(self.proj(seq), (1, 0, 2))        # (T, N, 8)
        last = F.select(p, 0, -1)                       # (N, 8): the last time step
        window = F.mean(F.narrow(p, 0, 1, 2), dim=0)    # (N, 8)
        total = F.sum(F.cat([r, last, window], dim=1), dim=1, keepdim=True)  # (N, 1)
        return F.add(F.mul(r, total), F.mean(c))


class TorchEveryOp(tnn.Module):
    def __init__(self):
        super().__init__()
        self.proj = tnn.Linear(6, 8)
        self.gamma = tnn.Parameter(torch.linspace(0.5, 1.5, 8, dtype=torch.float64))
        self.register_buffer("mask", torch.tensor([1.0, 0.0, 2.0, 1.0, 0.5, 1.0, 1.0, 3.0], dtype=torch.float64),
                             persistent=False)

    def forward(self, x, seq):
        h = self.proj(x) * self.gamma * self.mask
        a, b = torch.chunk(h, 2, dim=1)
        c, d, e = torch.split(h, [3, 1, 4], dim=1)
        s = torch.add(a, b, alpha=0.5) - e / (d * d + 1.0)
        st = torch.stack([s, a], dim=1)
        r = st.flatten(1).reshape(-1, 4, 2).transpose(1, 2).reshape(-1, 8)
        p = self.proj(seq).permute(1, 0, 2)
        last = torch.select(p, 0, -1)
        window = torch.narrow(p, 0, 1, 2).mean(dim=0)
        total = torch.cat([r, last, window], dim=1).sum(dim=1, keepdim=True)
        return r * total + c.mean()


def test_every_merge_op():
    model = EveryOp()
    out = assert_parity(model, TorchEveryOp(), (randn(4, 6), randn(4, 5, 6, seed=2)))
    assert out.shape == (4, 8)
    assert not out.flags.writeable  # outputs stay read-only while gradients are on


# -- nesting, containers, modules with their own backward ------------------------------------

class Inner(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.linear, self.act = nn.Linear(features, features, dtype=F64), nn.Tanh()

    def forward(self, x):
        return F.add(x, self.act(self.linear(x)))


class Outer(nn.Module):
    """Composites inside a composite; one of them called twice."""

    def __init__(self):
        super().__init__()
        self.first, self.second = Inner(5), Inner(5)
        self.head = nn.Linear(5, 2, dtype=F64)

    def forward(self, x):
        return self.head(self.second(self.first(self.second(x))))


class TorchInner(tnn.Module):
    def __init__(self, features):
        super().__init__()
        self.linear, self.act = tnn.Linear(features, features), tnn.Tanh()

    def forward(self, x):
        return x + self.act(self.linear(x))


class TorchOuter(tnn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second, self.head = TorchInner(5), TorchInner(5), tnn.Linear(5, 2)

    def forward(self, x):
        return self.head(self.second(self.first(self.second(x))))


def test_nested_composites_one_called_twice():
    assert_parity(Outer(), TorchOuter(), (randn(3, 5),))


def test_composites_inside_a_sequential_inside_a_composite():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(Inner(5), nn.ReLU(), Inner(5))

        def forward(self, x):
            return F.mul(self.body(x), self.body(x))  # the Sequential (and its composites) twice

    class TorchWrapper(tnn.Module):
        def __init__(self):
            super().__init__()
            self.body = tnn.Sequential(TorchInner(5), tnn.ReLU(), TorchInner(5))

        def forward(self, x):
            return self.body(x) * self.body(x)

    assert_parity(Wrapper(), TorchWrapper(), (randn(3, 5),))


class ConvNet(nn.Module):
    """A Sequential whose layers fuse (conv+ReLU+pool, linear+tanh), called twice."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, dtype=F64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                      nn.Linear(36, 6, dtype=F64), nn.Tanh())

    def forward(self, x, y):
        return F.cat([self.features(x), self.features(y)], dim=1)


class TorchConvNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.features = tnn.Sequential(tnn.Conv2d(2, 4, 3), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                                       tnn.Linear(36, 6), tnn.Tanh())

    def forward(self, x, y):
        return torch.cat([self.features(x), self.features(y)], 1)


def test_sequential_with_fused_layers_called_twice():
    assert_parity(ConvNet(), TorchConvNet(), (randn(2, 2, 8, 8), randn(2, 2, 8, 8, seed=3)))


class Scale(nn.Module):
    """A module with its own (hand-written) backward: y = 2 x, and a parameter b added."""

    def __init__(self, features):
        super().__init__(dtype=F64)
        self.bias = nn.Parameter(np.zeros(features))

    def forward(self, x):
        self._save_for_backward(x.shape)
        return 2.0 * x + self.bias.data

    def backward(self, grad_output):
        self._pop_saved()
        self.bias.grad_buffer()[...] += grad_output.sum(axis=0)
        return 2.0 * grad_output


def test_module_with_its_own_backward_inside_and_called_twice():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale, self.linear = Scale(3), nn.Linear(3, 3, dtype=F64)

        def forward(self, x):
            return self.scale(self.linear(self.scale(x)))

    class TorchModel(tnn.Module):
        def __init__(self):
            super().__init__()
            self.scale = tnn.Module()
            self.scale.bias = tnn.Parameter(torch.zeros(3, dtype=torch.float64))
            self.linear = tnn.Linear(3, 3)

        def forward(self, x):
            h = 2 * x + self.scale.bias
            return 2 * self.linear(h) + self.scale.bias

    model = Model()
    model.scale.bias.data[...] = [0.1, -0.2, 0.3]
    assert Scale._auto_backward is False and Model._auto_backward is True
    assert_parity(model, TorchModel(), (randn(4, 3),))


# -- recurrent layers ----------------------------------------------------------------------

class Recurrent(nn.Module):
    """LSTM with a learned initial state; only y's last step is used (h_n, c_n unused)."""

    def __init__(self):
        super().__init__()
        self.init_h, self.init_c = nn.Linear(3, 4, dtype=F64), nn.Linear(3, 4, dtype=F64)
        self.lstm = nn.LSTM(3, 4, batch_first=True, dtype=F64)
        self.head = nn.Linear(4, 2, dtype=F64)

    def forward(self, x, context):
        state = (F.reshape(self.init_h(context), (1, -1, 4)), F.reshape(self.init_c(context), (1, -1, 4)))
        y, _ = self.lstm(x, state)
        return self.head(F.select(y, 1, -1))


class TorchRecurrent(tnn.Module):
    def __init__(self):
        super().__init__()
        self.init_h, self.init_c = tnn.Linear(3, 4), tnn.Linear(3, 4)
        self.lstm = tnn.LSTM(3, 4, batch_first=True)
        self.head = tnn.Linear(4, 2)

    def forward(self, x, context):
        state = (self.init_h(context).reshape(1, -1, 4), self.init_c(context).reshape(1, -1, 4))
        y, _ = self.lstm(x, state)
        return self.head(y[:, -1])


def test_lstm_with_a_tracked_initial_state_and_unused_final_state():
    assert_parity(Recurrent(), TorchRecurrent(), (randn(2, 5, 3), randn(2, 3, seed=6)))


class CellLoop(nn.Module):
    """An LSTMCell called at every step (its stack of saved calls), outputs stacked."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(3, 4, dtype=F64)

    def forward(self, x):                    # x (T, N, 3)
        state, outputs = None, []
        for t in range(x.shape[0]):
            state = self.cell(F.select(x, 0, t), state)
            outputs.append(state[0])
        return F.stack(outputs)


class TorchCellLoop(tnn.Module):
    def __init__(self):
        super().__init__()
        self.cell = tnn.LSTMCell(3, 4)

    def forward(self, x):
        state, outputs = None, []
        for t in range(x.shape[0]):
            state = self.cell(x[t], state)
            outputs.append(state[0])
        return torch.stack(outputs)


def test_lstm_cell_loop():
    assert_parity(CellLoop(), TorchCellLoop(), (randn(4, 2, 3),))


# -- training ----------------------------------------------------------------------------

def test_fit_on_a_two_input_loader_matches_pytorch():
    """fit() over a loader of (a, b, y): model(a, b), the same steps as PyTorch's SGD."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((48, 5)), rng.standard_normal((48, 3))
    y = (a[:, 0] + b[:, 1] > 0).astype(np.int64)
    model, torch_model = TwoInputs(), TorchTwoInputs()
    copy_weights(model, torch_model)
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  DataLoader(a, b, y, batch_size=16), epochs=2, verbose=0)
    opt = torch.optim.SGD(torch_model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        for start in range(0, 48, 16):
            opt.zero_grad()
            batch = slice(start, start + 16)
            logits = torch_model(torch.from_numpy(a[batch]), torch.from_numpy(b[batch]))
            tnn.functional.cross_entropy(logits, torch.from_numpy(y[batch])).backward()
            opt.step()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, torch_model.state_dict()[name].numpy(), rtol=1e-9, atol=1e-12)
    assert history["loss"][-1] < history["loss"][0]


def test_a_loss_inside_the_model_needs_no_gradient():
    """forward returns the loss (a float): backward() starts from 1.0."""

    class WithLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.loss = TwoInputs(), nn.CrossEntropyLoss()

        def forward(self, a, b, target):
            return self.loss(self.body(a, b), target)

    model, torch_model = WithLoss(), TorchTwoInputs()
    copy_weights(model.body, torch_model)
    torch_model.double()
    a, b, target = randn(4, 5), randn(4, 3, seed=2), np.array([0, 1, 1, 0])
    loss = model(a, b, target)
    ga, gb, gt = model.backward()
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    tloss = tnn.functional.cross_entropy(torch_model(ta, tb), torch.from_numpy(target))
    tloss.backward()
    assert gt is None  # integer targets carry no gradient
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-12)
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, p in model.body.named_parameters():
        np.testing.assert_allclose(p.grad, dict(torch_model.named_parameters())[name].grad.numpy(), rtol=1e-9,
                                   atol=1e-12)
