"""Containers (ModuleList, ModuleDict, Identity), the new layers (AdaptiveAvg/MaxPool2d,
BatchNorm1d, LayerNorm, GELU, SiLU) against numpy references and float64 finite
differences (pycore.testing.gradcheck), freezing, apply, summary and nn.init, all without
PyTorch (test_layers_torch.py has the PyTorch parity)."""
import math

import numpy as np
import pytest

import pycore
import pycore.functional as F
import pycore.nn as nn
import pycore.optim as optim
from pycore.testing import GradcheckError, gradcheck


# -- containers ------------------------------------------------------------------------
def test_module_list_registers_and_renumbers():
    blocks = nn.ModuleList([nn.Linear(3, 4), nn.ReLU()])
    blocks.append(nn.Linear(4, 2))
    assert len(blocks) == 3 and isinstance(blocks[-1], nn.Linear)
    assert list(blocks.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    first = blocks[0]
    del blocks[0]
    assert list(blocks.state_dict()) == ["1.weight", "1.bias"] and first not in list(blocks)
    blocks.insert(0, first)
    assert [type(m).__name__ for m in blocks] == ["Linear", "ReLU", "Linear"]
    assert isinstance(blocks[1:], nn.ModuleList) and len(blocks[1:]) == 2
    with pytest.raises(IndexError, match="out of range"):
        blocks[3]
    with pytest.raises(TypeError, match="expected a Module"):
        blocks.append(np.zeros(3))


def test_module_dict_registers_under_its_keys():
    heads = nn.ModuleDict({"cls": nn.Linear(3, 2)})
    heads["box"] = nn.Linear(3, 4, bias=False)
    assert list(heads.state_dict()) == ["cls.weight", "cls.bias", "box.weight"]
    assert heads.keys() == ["cls", "box"] and "box" in heads and len(heads) == 2
    assert heads.pop("cls").out_features == 2 and list(heads) == ["box"]
    for bad, error in (("a.b", KeyError), ("training", KeyError), (3, TypeError)):
        with pytest.raises(error):
            heads[bad] = nn.ReLU()


def test_a_plain_list_of_modules_is_refused_with_the_fix():
    class Model(nn.Module):
        def __init__(self, container):
            super().__init__()
            self.layers = container

    for container, fix in (([nn.Linear(2, 2)], "ModuleList"), ((nn.ReLU(),), "ModuleList"),
                           ({"a": nn.ReLU()}, "ModuleDict")):
        with pytest.raises(TypeError, match=f"layers.*not registered.*nn.{fix}"):
            Model(container)
    assert Model([1, 2]).layers == [1, 2]  # lists of other things are fine
    model = Model(nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 1)]))
    assert model.num_parameters() == 2 * 3 + 3 + 3 + 1


def test_identity_passes_input_and_gradient_through():
    x = np.arange(6.0).reshape(2, 3)
    m = nn.Identity(54, unused="argument")
    assert m(x) is x and x.flags.writeable  # the caller's array is not frozen
    g = np.full((2, 3), 2.0)
    np.testing.assert_array_equal(m.backward(g), g)
    with pytest.raises(RuntimeError, match="no forward"):
        m.backward(g)


# -- layers: numpy references and finite differences -------------------------------------
def reference_adaptive(x, out, reduce):
    H, W = x.shape[-2:]
    oh, ow = out
    y = np.empty(x.shape[:-2] + out)
    for i in range(oh):
        for j in range(ow):
            hs, he = math.floor(i * H / oh), math.ceil((i + 1) * H / oh)
            ws, we = math.floor(j * W / ow), math.ceil((j + 1) * W / ow)
            y[..., i, j] = reduce(x[..., hs:he, ws:we], axis=(-2, -1))
    return y


@pytest.mark.parametrize("out", [(1, 1), (3, 2), (2, 5), (7, 5)])
def test_adaptive_pools_match_a_numpy_reference_and_finite_differences(out, rng):
    x = rng.standard_normal((2, 3, 7, 5))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, out), reference_adaptive(x, out, np.mean), rtol=1e-12)
    np.testing.assert_array_equal(F.adaptive_max_pool2d(x, out), reference_adaptive(x, out, np.max))
    assert gradcheck(nn.AdaptiveAvgPool2d(out), x)
    assert gradcheck(nn.AdaptiveMaxPool2d(out), x)


def test_global_average_pooling_and_none_sizes(rng):
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    np.testing.assert_allclose(nn.AdaptiveAvgPool2d(1)(x)[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-6)
    assert nn.AdaptiveMaxPool2d((None, 2))(x).shape == (2, 3, 4, 2)
    assert nn.AdaptiveAvgPool2d(2)(x[0]).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="output_size"):
        nn.AdaptiveAvgPool2d(0)


def test_batch_norm_1d_normalises_per_feature(rng):
    for shape, axes in (((8, 3), (0,)), ((4, 3, 5), (0, 2))):
        x = rng.standard_normal(shape) * 3 + 1
        m = nn.BatchNorm1d(3, dtype=np.float64)
        y = m(x)
        mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
        np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-10, atol=1e-12)
        n = x.size // 3
        np.testing.assert_allclose(m.running_var, 0.9 + 0.1 * x.var(axis=axes) * n / (n - 1), rtol=1e-10)
        assert gradcheck(nn.BatchNorm1d(3, dtype=np.float64), x)
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, L\)"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 4, 4), np.float32))


def test_layer_norm_matches_numpy_and_finite_differences(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    m = nn.LayerNorm((4, 5), dtype=np.float64)
    m.weight.data[...] = rng.standard_normal((4, 5))
    m.bias.data[...] = rng.standard_normal((4, 5))
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * m.weight.data + m.bias.data
    np.testing.assert_allclose(m(x), expected, rtol=1e-10, atol=1e-12)
    assert gradcheck(m, x)
    assert gradcheck(nn.LayerNorm(5, elementwise_affine=False, dtype=np.float64), x)
    assert list(nn.LayerNorm(5, bias=False).state_dict()) == ["weight"]
    with pytest.raises(ValueError, match=r"last 1 dims are \(4,\)"):
        nn.LayerNorm(4)(np.zeros((2, 5), np.float32))


def test_gelu_and_silu_match_their_formulas(rng):
    x = rng.standard_normal((3, 7)) * 3
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(F.gelu(x), 0.5 * x * (1 + erf(x / math.sqrt(2))), rtol=1e-14)
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(x, approximate="tanh"), tanh_form, rtol=1e-14)
    np.testing.assert_allclose(F.silu(x), x / (1 + np.exp(-x)), rtol=1e-14)
    # float32 takes a polynomial erf (|error| <= 1.5e-7): within 1e-6 of the exact GELU,
    # as PyTorch's float32 GELU is
    x32 = np.linspace(-8, 8, 2001, dtype=np.float32)
    exact = F.gelu(x32.astype(np.float64))
    np.testing.assert_allclose(F.gelu(x32), exact, rtol=0, atol=1e-6)
    np.testing.assert_allclose(F.gelu_backward(np.ones_like(x32), F.gelu_forward(x32)[1]),
                               F.gelu_backward(np.ones_like(exact), F.gelu_forward(x32.astype(np.float64))[1]),
                               rtol=0, atol=1e-6)
    for layer in (nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU()):
        assert gradcheck(layer, x)
        assert layer(x.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_conv1d_matches_a_numpy_loop_and_finite_differences(rng):
    x = rng.standard_normal((2, 4, 12))
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, dtype=np.float64)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    out_len = (12 + 2 - 2 * 2 - 1) // 2 + 1
    expected = np.empty((2, 6, out_len))
    for o in range(6):
        group = o // 3
        for i in range(out_len):
            taps = padded[:, 2 * group:2 * group + 2, 2 * i:2 * i + 5:2]  # dilation 2: 3 taps over 5
            expected[:, o, i] = (taps * conv.weight.data[o]).sum(axis=(1, 2)) + conv.bias.data[o]
    np.testing.assert_allclose(conv(x), expected, rtol=1e-12, atol=1e-12)
    assert conv.weight.shape == (6, 2, 3)
    assert gradcheck(conv, x)
    assert gradcheck(nn.Conv1d(4, 2, 4, padding="same", bias=False, dtype=np.float64), x)
    with pytest.raises(ValueError, match="same"):
        nn.Conv1d(4, 2, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv1d(4, 3, 3, groups=2)


# -- gradcheck ----------------------------------------------------------------------------
def test_gradcheck_catches_a_wrong_parameter_gradient_and_checks_functions(rng):
    class WrongBias(nn.Linear):
        def backward(self, grad_output):
            grad = super().backward(grad_output)
            self.bias.grad *= 1.1
            return grad

    x = rng.standard_normal((4, 5))
    with pytest.raises(GradcheckError, match="parameter 'bias'"):
        gradcheck(WrongBias(5, 2, dtype=np.float64), x)
    assert gradcheck(np.tanh, x, backward=lambda g, x: g * (1 - np.tanh(x) ** 2))
    with pytest.raises(GradcheckError, match=r"inputs\[0\]"):
        gradcheck(np.tanh, x, backward=lambda g, x: g)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(nn.Linear(5, 2), x)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(nn.ReLU(), x.astype(np.float32))


def test_gradcheck_restores_running_statistics_and_dropout_randomness(rng):
    x = rng.standard_normal((6, 3))
    bn = nn.BatchNorm1d(3, dtype=np.float64)
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    assert gradcheck(nn.Sequential(bn, nn.Dropout(0.3), nn.Linear(3, 2, dtype=np.float64)), x)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# -- freezing, apply, summary ------------------------------------------------------------
def test_frozen_parameters_get_no_gradient_and_do_not_move(rng):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    frozen = model[0].weight.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        y = model(rng.standard_normal((5, 4)).astype(np.float32))
        model.backward(np.ones_like(y))
        opt.step()
    assert model[0].weight.grad is None and model[0].bias.grad is None
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    assert model[2].weight.grad is not None and np.abs(model[2].weight.grad).sum() > 0
    model[0].weight.requires_grad = True
    y = model(rng.standard_normal((5, 4)).astype(np.float32))
    model.backward(np.ones_like(y))
    assert model[0].weight.grad is not None and model[0].bias.grad is None
    emb = nn.Embedding(5, 2)
    emb.weight.requires_grad = False
    emb(np.array([0, 1, 2]))
    emb.backward(np.ones((3, 2), np.float32))
    assert emb.weight.grad is None
    with pytest.raises(TypeError, match="requires_grad"):
        emb.weight.requires_grad = "no"


def test_apply_visits_children_first():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]
    model.apply(lambda m: nn.init.zeros_(m.weight) if isinstance(m, nn.Linear) else None)
    assert not model[0].weight.data.any() and not model[1][1].weight.data.any()


def test_summary_lists_layers_shapes_and_counts(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    model[5].requires_grad_(False)
    running = model[1].running_mean.copy()
    lines = []
    text = model.summary(rng.standard_normal((2, 1, 6, 6)).astype(np.float32), print_fn=lines.append)
    assert lines == [text]
    rows = text.splitlines()
    assert "0 (Conv2d)" in rows[2] and "(2, 4, 4, 4)" in rows[2] and rows[2].split()[-1] == "40"
    assert "2 (ReLU)" in rows[4] and "(2, 4, 4, 4)" in rows[4]  # reported on its own, not fused
    assert "(2, 4, 1, 1)" in rows[5] and "(2, 3)" in rows[7] and rows[7].split()[-1] == "15"
    assert "Total params: 63" in text and "Trainable params: 48" in text and "Non-trainable params: 15" in text
    np.testing.assert_array_equal(model[1].running_mean, running)  # ran in eval mode
    assert model.training and model[1].training and "forward" not in vars(model[0])


def test_summary_of_a_prelu_counts_its_weight(rng):
    """PReLU's num_parameters attribute (PyTorch's) hides Module.num_parameters(); summary
    called on a PReLU itself raised "'int' object is not callable" before it counted through
    Module's method."""
    layer = nn.PReLU(num_parameters=3)
    assert layer.num_parameters == 3
    text = layer.summary(rng.standard_normal((2, 3, 4)).astype(np.float32), print_fn=None)
    assert "Total params: 3" in text and "(2, 3, 4)" in text


# -- nn.init ---------------------------------------------------------------------------------
def test_init_fans_gains_and_distributions():
    init = nn.init
    assert init.calculate_fan_in_and_fan_out((64, 32, 3, 3)) == (288, 576)
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    w = np.empty((200, 100, 3, 3), np.float32)
    fan_in, fan_out = 900, 1800
    pycore.manual_seed(3)
    checks = [
        (lambda: init.xavier_uniform_(w), math.sqrt(6 / (fan_in + fan_out)) / math.sqrt(3), True),
        (lambda: init.xavier_normal_(w, gain=2.0), 2 * math.sqrt(2 / (fan_in + fan_out)), False),
        (lambda: init.kaiming_uniform_(w, nonlinearity="relu"), math.sqrt(2 / fan_in), True),
        (lambda: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), math.sqrt(2 / fan_out), False),
        (lambda: init.normal_(w, 1.0, 0.5), 0.5, False),
        (lambda: init.uniform_(w, -2.0, 2.0), 4 / math.sqrt(12), True),
    ]
    for fill, std, bounded in checks:
        assert fill() is w
        # 180,000 draws: the sample std is within ~0.2% of the true one (5 sigma < 1%)
        assert abs(w.std() / std - 1) < 0.01
        if bounded:
            assert np.abs(w).max() <= std * math.sqrt(3) * 1.0001 or np.abs(w).max() <= 2.0001
    param = nn.Parameter(np.empty((5, 12)))
    init.orthogonal_(param, gain=3.0)
    np.testing.assert_allclose(param.data @ param.data.T, 9 * np.eye(5), atol=1e-12)
    init.ones_(param)
    assert (param.data == 1).all() and (init.constant_(np.zeros(3), 2.5) == 2.5).all()
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(np.zeros(4))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(w, mode="fan")


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    (lambda: nn.Conv1d(2, 3, 3), (2, 2, 6)),
    (lambda: nn.BatchNorm2d(2), (3, 2, 4, 4)),
    (lambda: nn.LayerNorm(4), (3, 4)),
    (lambda: nn.LSTM(4, 3), (5, 2, 4)),
])
def test_frozen_layers_give_the_same_input_gradient_and_no_weight_gradient(make, shape, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    gradients = []
    for frozen in (False, True):
        pycore.manual_seed(0)
        layer = make()
        layer.requires_grad_(not frozen)
        y = layer(x)
        y = y[0] if isinstance(y, tuple) else y
        gradients.append(layer.backward(np.ones_like(y)))
        assert all((p.grad is None) == frozen for p in layer.parameters())
    gx = [g[0] if isinstance(g, tuple) else g for g in gradients]
    np.testing.assert_allclose(gx[1], gx[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols", [(3200, 37), (200, 1000)])
def test_channel_sum_is_exact_in_double_and_independent_of_threads(simd_path, dtype, rows, cols):
    """_C.channel_sum over rows (inner == 1: Linear's and the recurrent layers' bias
    gradients) sums each column in double (chunks of rows in order, then the chunks): the
    float64 sum of the column rounded once, on every SIMD path and at 1 and 2 threads.
    Rows of +-1e4 and small values make a float32 running sum lose digits (the test fails on
    such a sum). 3200 rows: threads take chunks of rows; 200 rows (one chunk): threads
    split the columns."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((rows, cols)) * np.where(rng.random((rows, cols)) < 0.1, 1e4, 1.0)).astype(dtype)
    start = rng.standard_normal(cols).astype(dtype)
    want = (start.astype(np.float64) + x.astype(np.float64).sum(axis=0, dtype=np.float64)).astype(dtype)
    got, before = {}, pycore.get_num_threads()
    try:
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            got[threads] = start.copy()
            pycore._C.channel_sum(got[threads], x, rows, cols, 1)
    finally:
        pycore.set_num_threads(before)
    np.testing.assert_array_equal(got[1], got[2])
    # row-order summation in double: off the exact sum by the rounding of the sum and of its addition
    rtol = 2 * np.finfo(np.float32).eps if dtype == np.float32 else 1e-12  # float64: vs numpy's pairwise sum
    np.testing.assert_allclose(got[1], want, rtol=rtol, atol=0)
