"""RNN, LSTM, GRU and Embedding against PyTorch 2.13 and float64 finite differences."""
import numpy as np
import pytest

import pycore
import pycore.functional as F
import pycore.nn as nn
from pycore import _C

try:  # only the PyTorch-parity tests need it (@requires_torch); the rest run without
    import torch
except ImportError:
    torch = None
requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: a parity test")

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64} if torch else {}
KINDS = {"LSTM": (nn.LSTM, torch and torch.nn.LSTM, {}), "GRU": (nn.GRU, torch and torch.nn.GRU, {}),
         "RNN_TANH": (nn.RNN, torch and torch.nn.RNN, {"nonlinearity": "tanh"}),
         "RNN_RELU": (nn.RNN, torch and torch.nn.RNN, {"nonlinearity": "relu"})}


def make_pair(kind, input_size, hidden, layers=1, bias=True, batch_first=False, dtype=np.float32):
    """A torch module and a pycore one holding the same weights (copied through the state_dict)."""
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(0)
    ref = torch_cls(input_size, hidden, num_layers=layers, bias=bias, batch_first=batch_first, **extra)
    ref = ref.to(TORCH_DTYPE[dtype])
    ours = ours_cls(input_size, hidden, num_layers=layers, bias=bias, batch_first=batch_first, dtype=dtype,
                    **extra)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    return ours, ref


def close(actual, expected, dtype, what):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == expected.shape, what
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOL[dtype])


# kind, layers, batch, steps, hidden, batch_first, many_to_one, with_state, dtype
CASES = [
    ("LSTM", 1, 3, 5, 13, False, False, True, np.float32),
    ("LSTM", 2, 3, 5, 13, True, False, False, np.float64),
    ("LSTM", 2, 1, 7, 8, False, True, True, np.float32),     # batch 1, many-to-one
    ("LSTM", 1, 4, 1, 13, True, True, False, np.float64),    # sequence length 1
    ("LSTM", 2, 2, 4, 13, True, True, True, np.float64),
    ("GRU", 1, 3, 5, 13, False, False, True, np.float64),
    ("GRU", 2, 2, 6, 13, True, True, True, np.float32),
    ("GRU", 1, 1, 1, 5, False, False, False, np.float32),
    ("GRU", 2, 3, 4, 7, False, True, False, np.float64),
    ("RNN_TANH", 2, 3, 5, 13, False, False, True, np.float32),
    ("RNN_RELU", 2, 3, 5, 13, True, True, True, np.float64),
    ("RNN_RELU", 1, 2, 3, 9, False, False, False, np.float32),
    ("RNN_TANH", 1, 1, 4, 7, False, True, False, np.float64),
]


@requires_torch
@pytest.mark.parametrize("kind,layers,batch,steps,hidden,batch_first,many_to_one,with_state,dtype", CASES)
def test_matches_torch(rng, kind, layers, batch, steps, hidden, batch_first, many_to_one, with_state, dtype):
    input_size = 6
    ours, ref = make_pair(kind, input_size, hidden, layers, batch_first=batch_first, dtype=dtype)
    tdt = TORCH_DTYPE[dtype]
    x_shape = (batch, steps, input_size) if batch_first else (steps, batch, input_size)
    x = rng.standard_normal(x_shape).astype(dtype)
    state_shape = (layers, batch, hidden)
    lstm = kind == "LSTM"
    h0 = rng.standard_normal(state_shape).astype(dtype)
    c0 = rng.standard_normal(state_shape).astype(dtype)

    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    tc0 = torch.tensor(c0, requires_grad=True)
    if with_state:
        ty, tstate = ref(tx, (th0, tc0) if lstm else th0)
        y, state = ours(x, (h0, c0) if lstm else h0)
    else:
        ty, tstate = ref(tx)
        y, state = ours(x)
    close(y, ty, dtype, "output")
    if lstm:
        close(state[0], tstate[0], dtype, "h_n")
        close(state[1], tstate[1], dtype, "c_n")
    else:
        close(state, tstate, dtype, "h_n")

    # Loss: <grad_y, y> + <grad_h_n, h_n> (+ <grad_c_n, c_n>).
    grad_h_n = rng.standard_normal(state_shape).astype(dtype)
    grad_c_n = rng.standard_normal(state_shape).astype(dtype)
    if many_to_one:
        grad_y = rng.standard_normal((batch, hidden)).astype(dtype)
        last = ty[:, -1] if batch_first else ty[-1]
        loss = (last * torch.tensor(grad_y)).sum()
    else:
        grad_y = rng.standard_normal(y.shape).astype(dtype)
        loss = (ty * torch.tensor(grad_y)).sum()
    if lstm:
        loss = loss + (tstate[0] * torch.tensor(grad_h_n)).sum() + (tstate[1] * torch.tensor(grad_c_n)).sum()
        grad_state = (grad_h_n, grad_c_n)
    else:
        loss = loss + (tstate * torch.tensor(grad_h_n)).sum()
        grad_state = grad_h_n
    loss.backward()

    ours.zero_grad()
    gx = ours.backward(grad_y, grad_state)
    close(gx, tx.grad, dtype, "grad of input")
    if with_state:
        if lstm:
            close(ours.grad_initial_state[0], th0.grad, dtype, "grad of h_0")
            close(ours.grad_initial_state[1], tc0.grad, dtype, "grad of c_0")
        else:
            close(ours.grad_initial_state, th0.grad, dtype, "grad of h_0")
    for name, p in ref.named_parameters():
        close(getattr(ours, name).grad, p.grad, dtype, f"grad of {name}")


@requires_torch
def test_grad_of_zero_initial_state_matches_torch(rng):
    """With no state given, grad_initial_state is still dL/dh_0 at h_0 = 0."""
    ours, ref = make_pair("GRU", 4, 6, layers=2, dtype=np.float64)
    x = rng.standard_normal((3, 2, 4))
    h0 = torch.zeros(2, 2, 6, dtype=torch.float64, requires_grad=True)
    ty, _ = ref(torch.tensor(x), h0)
    ty.sum().backward()
    y, _ = ours(x)
    ours.backward(np.ones_like(y))
    close(ours.grad_initial_state, h0.grad, np.float64, "grad of zero h_0")


@requires_torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_TANH"])
def test_no_bias_and_gradients_accumulate(rng, kind):
    ours, ref = make_pair(kind, 5, 7, layers=2, bias=False, dtype=np.float64)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in ref.named_parameters()]
    x = rng.standard_normal((4, 3, 5))
    ty, _ = ref(torch.tensor(x))
    (2 * ty.sum()).backward()
    for _ in range(2):  # two backwards of the same loss add up to the gradient of twice it
        y, _ = ours(x)
        ours.backward(np.ones_like(y))
    for name, p in ref.named_parameters():
        close(getattr(ours, name).grad, p.grad, np.float64, f"grad of {name}")


@requires_torch
def test_unbatched_input_matches_torch(rng):
    ours, ref = make_pair("LSTM", 3, 5, layers=2, dtype=np.float64)
    x = rng.standard_normal((4, 3))
    tx = torch.tensor(x, requires_grad=True)
    ty, (th, tc) = ref(tx)
    (ty.sum() + th.sum()).backward()
    y, (h, c) = ours(x)
    assert y.shape == (4, 5) and h.shape == (2, 5) and c.shape == (2, 5)
    close(y, ty, np.float64, "output")
    gx = ours.backward(np.ones_like(y), (np.ones_like(h), None))
    close(gx, tx.grad, np.float64, "grad of input")


@requires_torch
def test_parameter_names_shapes_and_init():
    pycore.manual_seed(3)
    m = nn.LSTM(10, 20, num_layers=2)
    shapes = {k: p.shape for k, p in m.named_parameters()}
    assert shapes == {k: tuple(v.shape) for k, v in torch.nn.LSTM(10, 20, num_layers=2).state_dict().items()}
    bound = 1 / np.sqrt(20)
    for p in m.parameters():
        assert p.dtype == np.float32 and np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.8 * bound
    pycore.manual_seed(3)
    again = nn.LSTM(10, 20, num_layers=2)
    np.testing.assert_array_equal(again.weight_hh_l1.data, m.weight_hh_l1.data)


def test_many_to_one_equals_zero_padded_many_to_many(rng):
    m = nn.LSTM(3, 4, num_layers=2, dtype=np.float64)
    x = rng.standard_normal((5, 2, 3))
    g_last = rng.standard_normal((2, 4))
    y, _ = m(x)
    gx_last = m.backward(g_last)
    grads_last = [p.grad.copy() for p in m.parameters()]
    m.zero_grad()
    m(x)
    full = np.zeros_like(y)
    full[-1] = g_last
    gx_full = m.backward(full)
    np.testing.assert_allclose(gx_last, gx_full, rtol=1e-12, atol=1e-14)
    for a, p in zip(grads_last, m.parameters()):
        np.testing.assert_allclose(a, p.grad, rtol=1e-12, atol=1e-14)


def test_requires_input_grad_false_returns_none(rng):
    m = nn.GRU(3, 4)
    m.requires_input_grad = False
    y, _ = m(rng.standard_normal((2, 2, 3)).astype(np.float32))
    assert m.backward(np.ones_like(y)) is None
    assert np.abs(m.weight_ih_l0.grad).sum() > 0


def test_odd_layouts_give_the_same_result(rng):
    m = nn.LSTM(4, 5, dtype=np.float64)
    base = rng.standard_normal((3, 6, 4))
    contiguous = np.ascontiguousarray(base[:, ::-2, :])
    strided = base[:, ::-2, :]
    fortran = np.asfortranarray(contiguous)
    readonly = contiguous.copy()
    readonly.flags.writeable = False
    expected, _ = m(contiguous)
    for x in (strided, fortran, readonly):
        y, _ = m(x)
        np.testing.assert_array_equal(y, expected)


def on_one_and_two_threads(run, simd_path="auto"):
    """[run() on 1 thread, run() on 2 threads], both on `simd_path`; restores both settings."""
    results = []
    before = pycore.get_num_threads()
    try:
        assert _C.set_simd_path(simd_path)
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            results.append(run())
    finally:
        pycore.set_num_threads(before)
        _C.set_simd_path("auto")
    return results


@requires_torch
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_RELU"])
def test_one_and_two_threads_agree(rng, kind):
    # big enough that the fused passes and the GEMMs split over two threads
    ours, _ = make_pair(kind, 16, 256, dtype=np.float32)
    x = rng.standard_normal((3, 32, 16)).astype(np.float32)

    def run():
        ours.zero_grad()
        y, _ = ours(x)
        gx = ours.backward(y)
        return [y, gx] + [p.grad.copy() for p in ours.parameters()]

    results = on_one_and_two_threads(run)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


SIMD_PATHS = [p for p in ("generic", "avx2+fma", "avx512f") if _C.set_simd_path(p)]
_C.set_simd_path("auto")


@requires_torch
@pytest.mark.parametrize("simd_path", SIMD_PATHS)
@pytest.mark.parametrize("batch, steps", [(1, 3), (1, 9), (32, 3)])
def test_lstm_recurrent_products_on_every_path(rng, simd_path, batch, steps):
    # Batch 1 runs the GEMM's one-row kernels, split over two threads from H = 513 on
    # (odd: scalar column tails, not whole panels): forward reads W_hh in place for fewer
    # than 8 steps and a transposed copy from 8 on (rnn.cpp's kPanelMinSteps), backward W_hh in place;
    # batch 32 takes the GEMM's shorter tile where the path has one. Each path matches
    # torch and gives the same bits on one and two threads.
    hidden = 513
    ours, ref = make_pair("LSTM", 7, hidden)
    x = rng.standard_normal((steps, batch, 7)).astype(np.float32)
    grad_y = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty, _ = ref(tx)
    ty.backward(torch.from_numpy(grad_y))
    def run():
        ours.zero_grad()
        y, _ = ours(x)
        gx = ours.backward(grad_y)
        return [y, gx] + [p.grad.copy() for p in ours.parameters()]

    results = on_one_and_two_threads(run, simd_path)
    close(results[0][0], ty, np.float32, "y")
    close(results[0][1], tx.grad, np.float32, "dx")
    close(ours.weight_hh_l0.grad, ref.weight_hh_l0.grad, np.float32, "dW_hh")
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@requires_torch
@pytest.mark.parametrize("simd_path", SIMD_PATHS)
@pytest.mark.parametrize("steps, grad_of", [(9, "y and state"), (3, "y and state"), (9, "state only")])
def test_batch_one_lstm_panels_on_every_path(rng, simd_path, steps, grad_of):
    # H = 256, a whole number of GEMV column blocks on every path: batch 1 runs
    # rnn.cpp's lstm_backward_panels (W_hh in column panels from 8 steps on, in place
    # below) and, from 8 steps on, lstm_forward_panels (W_hh is 1 MiB: panels on one
    # thread too; on 2, one parallel region with a barrier per step). Odd steps read the
    # panels in reverse, and 1 and 2 threads split them differently: the results must not
    # change by a bit. Matches torch with an initial state, and with a gradient of the
    # final state only (dy all zero).
    hidden = 256
    ours, ref = make_pair("LSTM", 7, hidden, layers=2)
    x = rng.standard_normal((steps, 1, 7)).astype(np.float32)
    h0, c0 = (rng.standard_normal((2, 1, hidden)).astype(np.float32) for _ in range(2))
    grad_y = rng.standard_normal((steps, 1, hidden)).astype(np.float32) if grad_of == "y and state" else None
    grad_state = tuple(rng.standard_normal((2, 1, hidden)).astype(np.float32) for _ in range(2))
    tx, th0, tc0 = (torch.from_numpy(a).requires_grad_(True) for a in (x, h0, c0))
    ty, (th, tc) = ref(tx, (th0, tc0))
    loss = (th * torch.from_numpy(grad_state[0])).sum() + (tc * torch.from_numpy(grad_state[1])).sum()
    if grad_y is not None:
        loss = loss + (ty * torch.from_numpy(grad_y)).sum()
    loss.backward()
    def run():
        ours.zero_grad()
        y, (h, c) = ours(x, (h0, c0))
        gx = ours.backward(grad_y, grad_state)
        return [y, h, c, gx, *ours.grad_initial_state] + [p.grad.copy() for p in ours.parameters()]

    results = on_one_and_two_threads(run, simd_path)
    close(results[0][0], ty, np.float32, "y")
    close(results[0][2], tc, np.float32, "c_n")
    close(results[0][3], tx.grad, np.float32, "dx")
    close(results[0][4], th0.grad, np.float32, "dh_0")
    close(results[0][5], tc0.grad, np.float32, "dc_0")
    for name, p in ref.named_parameters():
        close(getattr(ours, name).grad, p.grad, np.float32, f"grad of {name}")
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not _C.set_simd_path("generic"), reason="no generic path")
def test_baseline_passes_match_simd(rng):
    _C.set_simd_path("auto")
    m = nn.LSTM(5, 19)
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    y_simd, _ = m(x)
    gx_simd = m.backward(y_simd)
    try:
        assert _C.set_simd_path("generic")
        y_base, _ = m(x)
        gx_base = m.backward(y_base)
    finally:
        _C.set_simd_path("auto")
    np.testing.assert_allclose(y_base, y_simd, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx_base, gx_simd, rtol=1e-5, atol=1e-6)


def test_extreme_preactivations_saturate_without_nan():
    m = nn.LSTM(1, 3)
    for p in m.parameters():
        p.data[...] = 0
    m.weight_ih_l0.data[...] = 1
    x = np.array([[[1e4]], [[-1e4]], [[np.float32(3e38)]]], dtype=np.float32)
    y, (h, c) = m(x)
    assert np.isfinite(y).all() and np.isfinite(c).all()
    np.testing.assert_allclose(y[0], np.tanh(1.0), rtol=1e-6)  # i = f = o = 1, g = 1 -> c = 1


# -- float64 finite differences ---------------------------------------------------

def numeric_grad(f, array, eps=1e-6):
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_finite_differences(rng, kind):
    lstm = kind == "LSTM"
    m = (nn.LSTM if lstm else nn.GRU)(3, 4, num_layers=2, dtype=np.float64)
    x = rng.standard_normal((3, 2, 3))
    h0 = rng.standard_normal((2, 2, 4))
    c0 = rng.standard_normal((2, 2, 4))
    w_y = rng.standard_normal((3, 2, 4))
    w_h = rng.standard_normal((2, 2, 4))

    def loss():
        y, state = m(x, (h0, c0) if lstm else h0)
        h = state[0] if lstm else state
        extra = (state[1] * w_h).sum() if lstm else 0.0
        return (y * w_y).sum() + (h * w_h).sum() + extra

    loss()
    m.zero_grad()
    gx = m.backward(w_y, (w_h, w_h) if lstm else w_h)
    tol = dict(rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gx, numeric_grad(loss, x), **tol)
    grad_h0 = m.grad_initial_state[0] if lstm else m.grad_initial_state
    np.testing.assert_allclose(grad_h0, numeric_grad(loss, h0), **tol)
    if lstm:
        np.testing.assert_allclose(m.grad_initial_state[1], numeric_grad(loss, c0), **tol)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, numeric_grad(loss, p.data), err_msg=name, **tol)


# -- bad input ---------------------------------------------------------------------

def test_bad_construction():
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="bidirectional"):
        nn.LSTM(3, 4, bidirectional=1)
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(TypeError, match="dropout"):
        nn.GRU(3, 4, num_layers=2, dropout="0.5")
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="hidden_size"):
        nn.LSTM(3, 0)
    with pytest.raises(TypeError, match="num_layers"):
        nn.GRU(3, 4, num_layers=1.5)
    with pytest.raises(TypeError, match="dtype"):
        nn.LSTM(3, 4, dtype=np.int32)


def test_bad_forward_input(rng):
    m = nn.LSTM(3, 4, num_layers=2)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="input_size"):
        m(rng.standard_normal((5, 2, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        m(x[None])
    with pytest.raises(TypeError, match="float64 does not match"):
        m(x.astype(np.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        m(x.astype(np.int64))
    with pytest.raises(ValueError, match="at least one step"):
        m(x[:0])
    h = np.zeros((2, 2, 4), np.float32)
    with pytest.raises(TypeError, match=r"\(h_0, c_0\)"):
        m(x, h)
    with pytest.raises(ValueError, match="c_0: expected shape"):
        m(x, (h, np.zeros((1, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="h_0: expected shape"):
        m(x, (np.zeros((2, 3, 4), np.float32), h))
    with pytest.raises(TypeError, match="h_0"):
        m(x, (h.astype(np.float64), h))
    g = nn.GRU(3, 4)
    with pytest.raises(TypeError, match="only LSTM"):
        g(x, (h[:1], h[:1]))


def test_bad_backward(rng):
    m = nn.GRU(3, 4)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    with pytest.raises(RuntimeError, match="forward first"):
        m.backward(np.zeros((5, 2, 4), np.float32))
    y, _ = m(x)
    with pytest.raises(ValueError, match="grad_y has shape"):
        m.backward(np.zeros((5, 2, 3), np.float32))
    y, _ = m(x)
    with pytest.raises(ValueError, match="grad_h_n has shape"):
        m.backward(y, np.zeros((2, 2, 4), np.float32))
    y, _ = m(x)
    with pytest.raises(TypeError, match="grad_y"):
        m.backward(y.astype(np.float64))
    y, _ = m(x)
    m.backward(y)
    with pytest.raises(RuntimeError, match="one backward"):
        m.backward(y)
    with pycore.no_grad():
        y, _ = m(x)
    with pytest.raises(RuntimeError):
        m.backward(y)
    lstm = nn.LSTM(3, 4)
    y, _ = lstm(x)
    with pytest.raises(TypeError, match="pair"):
        lstm.backward(y, np.zeros((1, 2, 4), np.float32))


# -- Embedding ---------------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch(rng, padding_idx):
    ref = torch.nn.Embedding(7, 5, padding_idx=padding_idx).double()
    ours = nn.Embedding(7, 5, padding_idx=padding_idx, dtype=np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    idx = np.array([[0, 2, 2], [6, 1, 2], [2, 6, 3]])
    grad = rng.standard_normal((3, 3, 5))
    out = ref(torch.tensor(idx))
    (out * torch.tensor(grad)).sum().backward()
    y = ours(idx)
    assert y.shape == (3, 3, 5)
    close(y, out, np.float64, "embedding output")
    assert ours.backward(grad) is None
    close(ours.weight.grad, ref.weight.grad, np.float64, "embedding weight grad")


@pytest.mark.parametrize("padding_idx", [None, 4])
def test_embedding_backward_sums_repeated_rows_like_add_at(rng, padding_idx):
    """The sorted-runs backward against np.add.at (float64: the same sums up to order), on
    unsorted repeated ids, an id used once, ids never used, and no ids at all."""
    weight = rng.standard_normal((9, 3))
    for idx in (rng.integers(0, 9, size=(4, 7)), np.array([5, 1, 5, 4, 0, 5]), np.zeros((0,), np.int64)):
        _, ctx = F.embedding_forward(idx, weight, padding_idx)
        grad = rng.standard_normal(idx.shape + (3,))
        start = rng.standard_normal((9, 3))
        ours = start.copy()
        assert F.embedding_backward(grad, ctx, ours) is None
        expected = start.copy()
        keep = idx.reshape(-1) != (-1 if padding_idx is None else padding_idx)
        np.add.at(expected, idx.reshape(-1)[keep], grad.reshape(-1, 3)[keep])
        np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_embedding_init_and_bad_indices():
    pycore.manual_seed(0)
    e = nn.Embedding(1000, 8, padding_idx=3)
    assert abs(e.weight.data.std() - 1) < 0.05 and not e.weight.data[3].any()
    with pytest.raises(TypeError, match="integer"):
        e(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="1000"):
        e(np.array([1, 1000]))
    with pytest.raises(ValueError, match=r"-1"):
        e(np.array([-1, 2]))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)
    e(np.array([1, 2]))
    with pytest.raises(ValueError, match="grad_output"):
        e.backward(np.zeros((3, 8), np.float32))


@requires_torch
def test_embedding_feeds_lstm_end_to_end(rng):
    """Embedding -> LSTM (batch_first) -> Linear on (N, T, H) against the same stack in torch."""
    emb_ref = torch.nn.Embedding(11, 6).double()
    lstm_ours, lstm_ref = make_pair("LSTM", 6, 8, layers=1, batch_first=True, dtype=np.float64)
    head_ref = torch.nn.Linear(8, 3).double()
    emb = nn.Embedding(11, 6, dtype=np.float64)
    head = nn.Linear(8, 3, dtype=np.float64)
    emb.load_state_dict({k: v.detach().numpy() for k, v in emb_ref.state_dict().items()})
    head.load_state_dict({k: v.detach().numpy() for k, v in head_ref.state_dict().items()})
    tokens = rng.integers(0, 11, size=(2, 5))
    w = rng.standard_normal((2, 5, 3))
    (head_ref(lstm_ref(emb_ref(torch.tensor(tokens)))[0]) * torch.tensor(w)).sum().backward()
    y, _ = lstm_ours(emb(tokens))
    head(y)
    emb.backward(lstm_ours.backward(head.backward(w)))
    close(emb.weight.grad, emb_ref.weight.grad, np.float64, "embedding grad through LSTM")
    close(lstm_ours.weight_hh_l0.grad, lstm_ref.weight_hh_l0.grad, np.float64, "weight_hh grad")
