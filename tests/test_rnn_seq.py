"""Sequence features of RNN/LSTM/GRU: bidirectional layers, dropout between layers and
variable lengths, against PyTorch 2.13 (packed sequences) and float64 finite differences."""
import numpy as np
import pytest

import pycore
import pycore.nn as nn

try:  # only the PyTorch-parity tests need it (@requires_torch); the rest run without
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
except ImportError:
    torch = None
requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: a parity test")

KINDS = {"LSTM": (nn.LSTM, torch and torch.nn.LSTM, {}), "GRU": (nn.GRU, torch and torch.nn.GRU, {}),
         "RNN_TANH": (nn.RNN, torch and torch.nn.RNN, {"nonlinearity": "tanh"}),
         "RNN_RELU": (nn.RNN, torch and torch.nn.RNN, {"nonlinearity": "relu"})}
TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def make_pair(kind, input_size, hidden, dtype=np.float64, **options):
    """A torch module and a pycore one holding the same weights (through torch's state_dict)."""
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(0)
    ref = torch_cls(input_size, hidden, **options, **extra).to(torch.float64 if dtype == np.float64 else torch.float32)
    ours = ours_cls(input_size, hidden, dtype=dtype, **options, **extra)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in ref.named_parameters()]
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    return ours, ref


def torch_run(ref, x, state, lengths, batch_first):
    """torch forward, through pack_padded_sequence(enforce_sorted=False) when lengths are given."""
    if lengths is None:
        return ref(x, state)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    y, state = ref(packed, state)
    y, _ = pad_packed_sequence(y, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    return y, state


def close(actual, expected, dtype, what):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == expected.shape, what
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOL[dtype])


def check_against_torch(rng, kind, layers, bidirectional, batch_first, lengths=None, many_to_one=False,
                        with_state=True, dtype=np.float64, steps=5, batch=4, input_size=3, hidden=6):
    ours, ref = make_pair(kind, input_size, hidden, dtype, num_layers=layers, bidirectional=bidirectional,
                          batch_first=batch_first)
    directions = 2 if bidirectional else 1
    lstm = kind == "LSTM"
    x = rng.standard_normal((batch, steps, input_size) if batch_first else (steps, batch, input_size)).astype(dtype)
    state_shape = (layers * directions, batch, hidden)
    h0, c0 = (rng.standard_normal(state_shape).astype(dtype) for _ in range(2))
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    state, tstate = None, None
    if with_state:
        state, tstate = ((h0, c0), (th0, tc0)) if lstm else (h0, th0)
    ty, tstate = torch_run(ref, tx, tstate, lengths, batch_first)
    y, state = ours(x, state, lengths=lengths)
    close(y, ty, dtype, "output")
    states = zip(state, tstate, ("h_n", "c_n")) if lstm else [(state, tstate, "h_n")]
    for ours_s, ref_s, name in states:
        close(ours_s, ref_s, dtype, name)

    # Loss: <grad_y, y> (or the output at each sequence's last real step) + <grad_state, state>.
    if many_to_one:
        grad_y = rng.standard_normal((batch, hidden * directions)).astype(dtype)
        last = np.full(batch, steps - 1) if lengths is None else np.asarray(lengths) - 1
        picked = ty[np.arange(batch), last] if batch_first else ty[last, np.arange(batch)]
        loss = (picked * torch.tensor(grad_y)).sum()
    else:
        grad_y = rng.standard_normal(y.shape).astype(dtype)
        loss = (ty * torch.tensor(grad_y)).sum()
    grad_state = [rng.standard_normal(state_shape).astype(dtype) for _ in range(2 if lstm else 1)]
    for t, g in zip(tstate if lstm else [tstate], grad_state):
        loss = loss + (t * torch.tensor(g)).sum()
    loss.backward()
    ours.zero_grad()
    gx = ours.backward(grad_y, tuple(grad_state) if lstm else grad_state[0])
    close(gx, tx.grad, dtype, "grad of input")
    if with_state:
        grads = ours.grad_initial_state if lstm else [ours.grad_initial_state]
        for g, t in zip(grads, (th0, tc0)):
            close(g, t.grad, dtype, "grad of initial state")
    for name, p in ref.named_parameters():
        close(getattr(ours, name).grad, p.grad, dtype, f"grad of {name}")
    return gx


def central_difference(loss, array, eps=1e-6):
    """d loss() / d array by float64 central differences, perturbing `array` in place."""
    grad = np.zeros_like(array)
    flat = array.reshape(-1)
    with pycore.no_grad():  # a cell keeps no contexts for these evaluations
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            grad.reshape(-1)[i] = (up - loss()) / (2 * eps)
            flat[i] = old
    return grad


# kind, layers, batch_first, many_to_one, dtype
BIDIRECTIONAL = [
    ("LSTM", 1, False, False, np.float64),
    ("LSTM", 2, True, False, np.float64),
    ("LSTM", 2, False, True, np.float32),
    ("GRU", 1, True, True, np.float64),
    ("GRU", 2, False, False, np.float32),
    ("RNN_TANH", 2, True, False, np.float64),
    ("RNN_RELU", 1, False, False, np.float64),
]


@requires_torch
@pytest.mark.parametrize("kind,layers,batch_first,many_to_one,dtype", BIDIRECTIONAL)
def test_bidirectional_matches_torch(rng, kind, layers, batch_first, many_to_one, dtype):
    check_against_torch(rng, kind, layers, True, batch_first, many_to_one=many_to_one, dtype=dtype)


# kind, layers, bidirectional, batch_first, lengths, many_to_one
LENGTHS = [
    ("LSTM", 2, False, True, [2, 5, 1, 4], False),    # all different, one of length 1
    ("LSTM", 1, True, False, [3, 5, 3, 1], True),     # ties; many-to-one at each last real step
    ("LSTM", 2, True, True, [4, 1, 5, 2], False),
    ("GRU", 2, True, False, [5, 5, 5, 5], False),     # lengths given, all full
    ("GRU", 1, False, True, [1, 2, 3, 4], True),      # ascending
    ("RNN_TANH", 2, True, False, [3, 1, 2, 5], False),
    ("RNN_RELU", 1, False, False, [1, 1, 1, 1], False),  # every sequence one step long
]


@requires_torch
@pytest.mark.parametrize("kind,layers,bidirectional,batch_first,lengths,many_to_one", LENGTHS)
def test_lengths_match_torch_packed_sequences(rng, kind, layers, bidirectional, batch_first, lengths, many_to_one):
    gx = check_against_torch(rng, kind, layers, bidirectional, batch_first, lengths=np.array(lengths),
                             many_to_one=many_to_one)
    for n, length in enumerate(lengths):  # no gradient reaches the padding
        assert not (gx[n, length:] if batch_first else gx[length:, n]).any()


def test_lengths_without_state_and_padding_values_do_not_matter(rng):
    m = nn.GRU(3, 4, bidirectional=True, dtype=np.float64)
    x = rng.standard_normal((5, 3, 3))
    lengths = np.array([2, 5, 3])
    y, h = m(x, lengths=lengths)
    noisy = x.copy()
    for n, length in enumerate(lengths):
        noisy[length:, n] = 1e3
    y2, h2 = m(noisy, lengths=lengths)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(h, h2)
    assert not y[2:, 0].any() and not y[3:, 2].any()


@requires_torch
def test_dropout_p0_in_training_and_any_p_in_eval_equal_torch(rng):
    check_against_torch(rng, "LSTM", 2, True, False, lengths=np.array([3, 5, 2, 4]))  # dropout=0 default
    ours, ref = make_pair("GRU", 3, 5, num_layers=3, dropout=0.6, bidirectional=True)
    ours.eval()
    ref.eval()
    x = rng.standard_normal((4, 2, 3))
    y, h = ours(x)
    ty, th = ref(torch.tensor(x))
    close(y, ty, np.float64, "eval output")
    close(h, th, np.float64, "eval h_n")


@requires_torch
def test_dropout_mask_is_applied_between_layers(rng):
    """Training mode: the pycore generator's draws u give mask (u >= p) / (1 - p) on the
    first layer's outputs; the reference is two single-layer torch modules with that mask."""
    p, seed = 0.4, 11
    ours, ref = make_pair("LSTM", 3, 5, num_layers=2, dropout=p, bidirectional=True)
    x = rng.standard_normal((6, 4, 3))
    grad_y = rng.standard_normal((6, 4, 10))
    pycore.manual_seed(seed)
    y, _ = ours(x)
    gx = ours.backward(grad_y)

    u = np.random.default_rng(seed).random((6, 4, 10))
    mask = torch.tensor((u >= p) / (1 - p))
    assert 0.2 < float((mask == 0).double().mean()) < 0.6
    bottom = torch.nn.LSTM(3, 5, bidirectional=True).double()
    top = torch.nn.LSTM(10, 5, bidirectional=True).double()
    state = ref.state_dict()
    for module, layer in ((bottom, 0), (top, 1)):
        module.load_state_dict({k: state[k.replace("_l0", f"_l{layer}")] for k in module.state_dict()})
    tx = torch.tensor(x, requires_grad=True)
    ty, _ = top(bottom(tx)[0] * mask)
    (ty * torch.tensor(grad_y)).sum().backward()
    close(y, ty, np.float64, "output with dropout")
    close(gx, tx.grad, np.float64, "grad of input through the mask")
    close(ours.weight_ih_l0_reverse.grad, bottom.weight_ih_l0_reverse.grad, np.float64, "grad below the mask")


def test_finite_differences_bidirectional_lengths_dropout(rng):
    m = nn.GRU(2, 2, num_layers=2, bidirectional=True, dropout=0.3, dtype=np.float64)
    x = rng.standard_normal((4, 3, 2))
    h0 = rng.standard_normal((4, 3, 2))
    lengths = np.array([2, 4, 1])
    w_y, w_h = rng.standard_normal((4, 3, 4)), rng.standard_normal((4, 3, 2))

    def loss():
        pycore.manual_seed(7)  # the same dropout mask on every evaluation
        y, h = m(x, h0, lengths=lengths)
        return (y * w_y).sum() + (h * w_h).sum()

    loss()
    m.zero_grad()
    gx = m.backward(w_y, w_h)
    tol = dict(rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gx, central_difference(loss, x), **tol)
    np.testing.assert_allclose(m.grad_initial_state, central_difference(loss, h0), **tol)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, central_difference(loss, p.data), err_msg=name, **tol)


def test_bad_lengths(rng):
    m = nn.LSTM(3, 4, bidirectional=True)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    for lengths, message in (([0, 3], r"\[1, 5\].*lengths\[0\] = 0"), ([3, 6], r"lengths\[1\] = 6"),
                             ([3, 3, 3], r"shape \(2,\)"), ([[3, 3]], r"shape \(2,\)"),
                             (np.array([3.0, 2.0]), "integer"), ([True, True], "integer")):
        with pytest.raises(ValueError, match=message):
            m(x, lengths=lengths)
    with pytest.raises(ValueError, match="batched"):
        m(x[:, 0], lengths=[5])
    with pytest.raises(ValueError, match=r"h_0: expected shape \(2, 2, 4\)"):
        m(x, (np.zeros((1, 2, 4), np.float32),) * 2)


# -- cells ---------------------------------------------------------------------------

CELLS = {"LSTM": (nn.LSTMCell, torch and torch.nn.LSTMCell, {}), "GRU": (nn.GRUCell, torch and torch.nn.GRUCell, {}),
         "RNN_TANH": (nn.RNNCell, torch and torch.nn.RNNCell, {}),
         "RNN_RELU": (nn.RNNCell, torch and torch.nn.RNNCell, {"nonlinearity": "relu"})}


def cell_loop_backward(cell, grad_outs, lstm):
    """The documented manual loop: backward through T calls, newest first."""
    grad_h = grad_c = None
    grad_x = []
    for g in reversed(grad_outs):
        g = g if grad_h is None else g + grad_h
        gx, grad_state = cell.backward((g, grad_c) if lstm else g)
        grad_h, grad_c = grad_state if lstm else (grad_state, None)
        grad_x.append(gx)
    return np.stack(grad_x[::-1]), (grad_h, grad_c) if lstm else grad_h


@requires_torch
@pytest.mark.parametrize("kind,bias,unbatched", [("LSTM", True, False), ("GRU", True, True),
                                                 ("RNN_TANH", False, False), ("RNN_RELU", True, False)])
def test_cell_loop_matches_torch(rng, kind, bias, unbatched):
    ours_cls, torch_cls, extra = CELLS[kind]
    lstm = kind == "LSTM"
    torch.manual_seed(0)
    ref = torch_cls(3, 5, bias=bias, **extra).double()
    cell = ours_cls(3, 5, bias=bias, dtype=np.float64, **extra)
    assert [k for k, _ in cell.named_parameters()] == [k for k, _ in ref.named_parameters()]
    cell.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    lead = () if unbatched else (2,)
    x = rng.standard_normal((4,) + lead + (3,))
    h0, c0 = rng.standard_normal(lead + (5,)), rng.standard_normal(lead + (5,))
    grad_outs = rng.standard_normal((4,) + lead + (5,))
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))

    state, tstate, outs, touts = ((h0, c0) if lstm else h0), ((th0, tc0) if lstm else th0), [], []
    for t in range(4):
        state, tstate = cell(x[t], state), ref(tx[t], tstate)
        outs.append(state[0] if lstm else state)
        touts.append(tstate[0] if lstm else tstate)
    close(np.stack(outs), torch.stack(touts), np.float64, "cell outputs")
    (torch.stack(touts) * torch.tensor(grad_outs)).sum().backward()
    cell.zero_grad()
    gx, grad_state = cell_loop_backward(cell, grad_outs, lstm)
    close(gx, tx.grad, np.float64, "grad of input")
    close(grad_state[0] if lstm else grad_state, th0.grad, np.float64, "grad of h0")
    if lstm:
        close(grad_state[1], tc0.grad, np.float64, "grad of c0")
    for name, p in ref.named_parameters():
        close(getattr(cell, name).grad, p.grad, np.float64, f"grad of {name}")


def test_cell_loop_equals_the_layer(rng):
    layer = nn.GRU(3, 4, dtype=np.float64)
    cell = nn.GRUCell(3, 4, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})  # weight_ih_l0 -> weight_ih
    x, grad_y = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    y, _ = layer(x)
    gx = layer.backward(grad_y)
    h, outs = None, []
    for t in range(5):
        h = cell(x[t], h)
        outs.append(h)
    np.testing.assert_allclose(np.stack(outs), y, rtol=1e-12, atol=1e-14)
    gx_cell, _ = cell_loop_backward(cell, grad_y, False)
    np.testing.assert_allclose(gx_cell, gx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell.weight_hh.grad, layer.weight_hh_l0.grad, rtol=1e-12, atol=1e-14)


def test_cell_init_and_bad_input(rng):
    pycore.manual_seed(1)
    cell = nn.LSTMCell(3, 4)
    assert cell.weight_ih.shape == (16, 3) and np.abs(cell.weight_hh.data).max() <= 0.5
    x = rng.standard_normal((2, 3)).astype(np.float32)
    with pytest.raises(RuntimeError, match="no forward"):
        cell.backward((np.zeros((2, 4), np.float32), None))
    with pytest.raises(TypeError, match=r"pair \(h, c\)"):
        cell(x, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"c: expected shape \(2, 4\)"):
        cell(x, (np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32)))
    with pytest.raises(ValueError, match="input_size"):
        cell(x[:, :2])
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="sigmoid")
    cell(x)
    with pytest.raises(ValueError, match=r"grad_h has shape"):
        cell.backward((np.zeros((3, 4), np.float32), None))
    cell.backward((np.zeros((2, 4), np.float32), None))  # the failed call left the context in place
    with pytest.raises(RuntimeError, match="no forward"):
        cell.backward((np.zeros((2, 4), np.float32), None))
    with pycore.no_grad():
        cell(x)
    cell(x)
    cell.clear_saved()
    with pytest.raises(RuntimeError, match="no forward"):
        cell.backward((np.zeros((2, 4), np.float32), None))


def test_truncated_bptt_refuses_a_bidirectional_model():
    from pycore.train import check_state_can_carry, train_char_model
    check_state_can_carry(nn.LSTM(3, 4))
    model = nn.Sequential(nn.Embedding(5, 3), nn.GRU(3, 4, bidirectional=True))
    with pytest.raises(ValueError, match="1: truncated BPTT.*bidirectional"):
        check_state_can_carry(model)
    with pytest.raises(ValueError, match="bidirectional"):
        train_char_model(nn.LSTM(3, 4, bidirectional=True), np.zeros(50, np.int64), steps=1)


def test_lstm_cell_loop_finite_differences(rng):
    cell = nn.LSTMCell(2, 3, dtype=np.float64)
    x, h0, c0 = rng.standard_normal((3, 2, 2)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    w_h, w_c = rng.standard_normal((3, 2, 3)), rng.standard_normal((2, 3))

    def loss():
        state, total = (h0, c0), 0.0
        for t in range(3):
            state = cell(x[t], state)
            total += (state[0] * w_h[t]).sum()
        return total + (state[1] * w_c).sum()

    loss()
    cell.zero_grad()
    grad_h, grad_c, grad_x = None, w_c, np.empty_like(x)
    for t in reversed(range(3)):
        grad_x[t], (grad_h, grad_c) = cell.backward((w_h[t] if grad_h is None else w_h[t] + grad_h, grad_c))
    tol = dict(rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_x, central_difference(loss, x), **tol)
    np.testing.assert_allclose(grad_h, central_difference(loss, h0), **tol)
    np.testing.assert_allclose(grad_c, central_difference(loss, c0), **tol)
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, central_difference(loss, p.data), err_msg=name, **tol)
