"""Fused layers: conv2d/linear with activation=..., the GEMM epilogue, and Sequential's fusion.

References: the unfused functions and modules (bit for bit), PyTorch, and float64 finite
differences for the fused backward.
"""
import numpy as np
import pytest

import pycore
import pycore.functional as F
import pycore.nn as nn
from pycore import _C
from pycore.nn import fusion

from conftest import numeric_grad

ACTIVATIONS = [("relu", 0.01), ("leaky_relu", 0.2), ("tanh", 0.01), ("sigmoid", 0.01), (None, 0.01)]
SIMD_PATHS = [p for p in ("generic", "avx2+fma", "avx512f") if _C.set_simd_path(p)]
_C.set_simd_path("auto")


@pytest.fixture(params=SIMD_PATHS)
def simd_path(request):
    assert _C.set_simd_path(request.param)
    yield request.param
    _C.set_simd_path("auto")


def unfused_activation(y, name, slope):
    return {None: lambda: y, "relu": lambda: F.relu(y), "leaky_relu": lambda: F.leaky_relu(y, slope),
            "tanh": lambda: F.tanh(y), "sigmoid": lambda: F.sigmoid(y)}[name]()


@pytest.mark.parametrize("name,slope", ACTIVATIONS)
def test_conv2d_and_linear_epilogue_equal_unfused(rng, simd_path, name, slope):
    # Conv: one image per GEMM (12x12 outputs: 144 columns, direct write) and small
    # images staged several at a time (4x4 outputs); groups give each its own bias rows.
    for shape, wshape, groups in [((2, 4, 14, 14), (6, 2, 3, 3), 2), ((5, 3, 6, 6), (7, 3, 3, 3), 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal(wshape).astype(np.float32)
        b = rng.standard_normal(wshape[0]).astype(np.float32)
        for bias in (b, None):
            fused = F.conv2d(x, w, bias, groups=groups, activation=name, negative_slope=slope)
            expected = unfused_activation(F.conv2d(x, w, bias, groups=groups), name, slope)
            np.testing.assert_array_equal(fused, expected)
    # Linear: M == 1 (the GEMV path), a blocked product with partial tiles, and 10 outputs
    # of 300 rows (computed as the transposed product, the epilogue after it).
    for rows, outputs in ((1, 45), (37, 45), (300, 10)):
        x = rng.standard_normal((rows, 29)).astype(np.float32)
        w = rng.standard_normal((outputs, 29)).astype(np.float32)
        b = rng.standard_normal(outputs).astype(np.float32)
        for bias in (b, None):
            fused = F.linear(x, w, bias, activation=name, negative_slope=slope)
            np.testing.assert_array_equal(fused, unfused_activation(F.linear(x, w, bias), name, slope))


@pytest.mark.parametrize("m,n", [(13, 70), (300, 10)])  # (300, 10): the transposed product
@pytest.mark.parametrize("name,slope", ACTIVATIONS[:4])
def test_gemm_row_bias_epilogue_matches_numpy(rng, name, slope, m, n):
    a, b = rng.standard_normal((m, 40)), rng.standard_normal((40, n))
    bias = rng.standard_normal(m)
    code = {"relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}[name]
    c = _C.gemm(a, b, np.empty((m, n)), False, False, 1.0, 0.0, bias, None, code, slope)
    pre = a @ b + bias[:, None]
    ref = {"relu": np.maximum(pre, 0), "leaky_relu": np.where(pre > 0, pre, slope * pre), "tanh": np.tanh(pre),
           "sigmoid": 1 / (1 + np.exp(-pre))}[name]
    np.testing.assert_allclose(c, ref, rtol=1e-12, atol=1e-12)


def test_fused_functional_backward_matches_finite_differences(rng):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3)) * 0.3
    b = rng.standard_normal(4) * 0.3
    gy = rng.standard_normal((2, 4, 4, 4))
    for name, slope in [("tanh", 0.01), ("sigmoid", 0.01), ("leaky_relu", 0.3)]:
        def f(_):
            return F.conv2d(x, w, b, activation=name, negative_slope=slope)
        y, ctx = F.conv2d_forward(x, w, b, activation=name, negative_slope=slope)
        gw, gb = np.zeros_like(w), np.zeros_like(b)
        grad_pre = F.activation_backward(gy, y, name, slope)
        gx = F.conv2d_backward(grad_pre, ctx, gw, gb)
        np.testing.assert_allclose(gx, numeric_grad(f, x, gy), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(gw, numeric_grad(f, w, gy), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(gb, numeric_grad(f, b, gy), rtol=1e-6, atol=1e-7)
    xl, wl, bl = rng.standard_normal((3, 5)), rng.standard_normal((4, 5)), rng.standard_normal(4)
    gyl = rng.standard_normal((3, 4))
    yl, ctxl = F.linear_forward(xl, wl, bl, activation="sigmoid")
    gwl = np.zeros_like(wl)
    gxl = F.linear_backward(F.activation_backward(gyl, yl, "sigmoid"), ctxl, gwl)
    np.testing.assert_allclose(gxl, numeric_grad(lambda _: F.linear(xl, wl, bl, activation="sigmoid"), xl, gyl),
                               rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gwl, numeric_grad(lambda _: F.linear(xl, wl, bl, activation="sigmoid"), wl, gyl),
                               rtol=1e-6, atol=1e-8)


def lenet_like(dtype=np.float32):
    pycore.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1, dtype=dtype), nn.LeakyReLU(0.1),
                         nn.Flatten(), nn.Linear(6 * 3 * 3, 10, dtype=dtype), nn.Tanh(),
                         nn.Linear(10, 5, dtype=dtype), nn.Sigmoid())


def run_unfused(model, x, gy):
    """The modules one by one, as Sequential ran them before fusion."""
    for m in model:
        x = m(x)
    g = gy
    for m in reversed(list(model)):
        g = m.backward(g)
        if g is None:
            break
    return x, g


def run_model(model, x, gy):
    y = model(x)
    return y, model.backward(gy)


def assert_matches_torch(model, tmodel, x, gy):
    """float64: the (fused) model's output, input gradient and every parameter gradient
    against the torch model with the same weights. Returns the input gradient."""
    torch = pytest.importorskip("torch")
    y, gx = run_model(model, x, gy)
    xt = torch.from_numpy(x).requires_grad_()
    yt = tmodel(xt)
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    for (name, p), tp in zip(model.named_parameters(), tmodel.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    return gx


def grads(model):
    return [p.grad.copy() for p in model.parameters()]


def test_sequential_plans_fused_steps_and_keeps_its_interface():
    model = lenet_like()
    steps = fusion.plan(list(model))
    assert [type(s).__name__ for s in steps] == ["ReLUPoolStep", "FusedStep", "Flatten", "FusedStep", "FusedStep"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias",
                                        "8.weight", "8.bias"]
    assert [name for name, _ in model.named_modules()] == [""] + [str(i) for i in range(10)]
    assert isinstance(model[1], nn.ReLU) and len(model) == 10
    assert repr(model).splitlines()[1] == "  (0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1))"
    # Not fused: a negative slope (backward could not read the side from y), a subclass,
    # an activation with no layer before it, debug mode.
    class MyReLU(nn.ReLU):
        pass
    odd = [nn.Linear(3, 3), nn.LeakyReLU(-0.5), nn.Linear(3, 3), MyReLU(), nn.ReLU(), nn.Linear(3, 3)]
    assert [type(s).__name__ for s in fusion.plan(odd)] == ["Linear", "LeakyReLU", "Linear", "MyReLU", "ReLU",
                                                           "Linear"]
    pycore.set_debug(True)
    try:
        assert all(not isinstance(s, (fusion.FusedStep, fusion.ReLUPoolStep)) for s in fusion.plan(list(model)))
    finally:
        pycore.set_debug(False)


def test_sequential_fused_equals_unfused(rng, simd_path):
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    gy = rng.standard_normal((3, 5)).astype(np.float32)
    fused_model, plain_model = lenet_like(), lenet_like()
    y, gx = run_model(fused_model, x, gy)
    y_ref, gx_ref = run_unfused(plain_model, x, gy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(gx, gx_ref)
    for g, g_ref in zip(grads(fused_model), grads(plain_model)):
        np.testing.assert_array_equal(g, g_ref)
    # The first layer skips its input gradient: None, and the same parameter gradients.
    fused_model.zero_grad(), plain_model.zero_grad()
    fused_model.requires_input_grad = False
    plain_model.requires_input_grad = False
    assert run_model(fused_model, x, gy)[1] is None
    assert run_unfused(plain_model, x, gy)[1] is None
    for g, g_ref in zip(grads(fused_model), grads(plain_model)):
        np.testing.assert_array_equal(g, g_ref)


def test_sequential_fused_one_and_two_threads_bit_identical(rng):
    x = rng.standard_normal((16, 1, 8, 8)).astype(np.float32)
    gy = rng.standard_normal((16, 5)).astype(np.float32)
    results = []
    before = pycore.get_num_threads()
    try:
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            model = lenet_like()
            y, gx = run_model(model, x, gy)
            results.append([y, gx] + grads(model))
    finally:
        pycore.set_num_threads(before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_sequential_fused_matches_torch(rng):
    torch = pytest.importorskip("torch")
    model = lenet_like(np.float64)
    tmodel = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                 torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.LeakyReLU(0.1), torch.nn.Flatten(),
                                 torch.nn.Linear(54, 10), torch.nn.Tanh(), torch.nn.Linear(10, 5),
                                 torch.nn.Sigmoid()).double()
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    x = rng.standard_normal((4, 1, 8, 8))
    gy = rng.standard_normal((4, 5))
    assert_matches_torch(model, tmodel, x, gy)


def test_sequential_fused_under_no_grad_and_eval(rng):
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    model = lenet_like().eval()
    reference = run_unfused(lenet_like().eval(), x, np.ones((2, 5), np.float32))[0]
    with pycore.no_grad():
        y = model(x)
    np.testing.assert_array_equal(y, reference)
    with pytest.raises(RuntimeError, match="no forward"):
        model.backward(np.ones_like(y))


def test_fused_bad_arguments(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="activation"):
        F.conv2d(x, w, activation="gelu")
    with pytest.raises(ValueError, match="negative_slope"):
        F.linear(x[0, 0], w[0, 0, :, :2].T.copy(), activation="leaky_relu", negative_slope=-0.1)
    with pytest.raises(TypeError, match="negative_slope"):
        F.conv2d(x, w, activation="leaky_relu", negative_slope="0.1")
    with pytest.raises(ValueError, match="activation"):
        _C.conv2d_forward(np.empty((1, 3, 3, 3), np.float32), x, w, None, 1, 1, 0, 0, 0, 0, 1, 1, 1, 7, 0.0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 3\).*got \(2, 4\)"):
        model.backward(np.ones((2, 4), np.float32))


def test_sequential_replans_when_a_child_is_replaced(rng):
    x = rng.standard_normal((2, 4)).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model(x)
    setattr(model, "1", nn.Tanh())  # replace the activation: the next forward must use Tanh
    expected = F.tanh(F.linear(x, model[0].weight.data, model[0].bias.data))
    np.testing.assert_array_equal(model(x), expected)
    model.add_extra = nn.Sigmoid()  # a new child at the end joins the plan too
    np.testing.assert_array_equal(model(x), F.sigmoid(expected))


def relu_pool_model(dtype=np.float32):
    """Both ReLU + MaxPool2d rules: after a Conv2d (its ReLU epilogue, then the pooling) and
    on their own (after BatchNorm2d: pooled and clipped in one pass), with overlapping
    padded windows (kernel 3, stride 2, padding 1) and a Linear + ReLU + MaxPool2d triple."""
    pycore.manual_seed(5)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1),
                         nn.BatchNorm2d(3, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                         nn.Linear(2, 4, dtype=dtype), nn.ReLU(), nn.MaxPool2d((1, 2)))


def test_relu_max_pool_fusion_plans_and_equals_unfused(rng):
    model = relu_pool_model()
    steps = model._steps()
    assert [type(s).__name__ for s in steps] == ["ReLUPoolStep", "BatchNorm2d", "ReLUPoolStep", "ReLUPoolStep"]
    assert [s.layer is not None for s in (steps[0], steps[2], steps[3])] == [True, False, True]
    # Only the exact classes: a ReLUMaxPool2d (a MaxPool2d subclass) or an AvgPool2d stays a module.
    assert [type(s).__name__ for s in fusion.plan([nn.ReLU(), nn.AvgPool2d(2), nn.ReLU(), nn.ReLUMaxPool2d(2)])] \
        == ["ReLU", "AvgPool2d", "ReLU", "ReLUMaxPool2d"]
    x = rng.standard_normal((2, 2, 7, 7)).astype(np.float32)
    gy = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    y, gx = run_model(model, x, gy)
    plain = relu_pool_model()
    y_ref, gx_ref = run_unfused(plain, x, gy)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(gx, gx_ref)
    for g, g_ref in zip(grads(model), grads(plain)):
        np.testing.assert_array_equal(g, g_ref)
    # The triple keeps every module's state as unfused (ReLU its output, MaxPool2d its argmax),
    # so a module's own backward still runs after a fused forward; the pair's ReLU keeps nothing.
    model(x)
    assert model[1]._saved is not None and model[2]._saved is not None and model[4]._saved is None
    with pycore.no_grad():
        np.testing.assert_array_equal(model(x), y_ref)
    with pytest.raises(RuntimeError, match="no forward"):
        model.backward(gy)
    model(x)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 3, 2, 2\), got \(2, 3, 2, 3\)"):
        model.backward(np.ones((2, 3, 2, 3), np.float32))


def test_relu_max_pool_fusion_matches_torch_and_finite_differences(rng):
    torch = pytest.importorskip("torch")
    model = relu_pool_model(np.float64)
    tnn = torch.nn
    tmodel = tnn.Sequential(tnn.Conv2d(2, 3, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2, padding=1),
                            tnn.BatchNorm2d(3), tnn.ReLU(), tnn.MaxPool2d(2, ceil_mode=True),
                            tnn.Linear(2, 4), tnn.ReLU(), tnn.MaxPool2d((1, 2))).double()
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()}, strict=False)
    x = rng.standard_normal((2, 2, 7, 7))
    gy = rng.standard_normal((2, 3, 2, 2))
    gx = assert_matches_torch(model, tmodel, x, gy)
    # float64 central differences of the fused model itself (training-mode BatchNorm included).
    def f(_):
        with pycore.no_grad():
            return model(x)
    conv_weight = model[0].weight
    grad_w = conv_weight.grad.copy()
    np.testing.assert_allclose(gx, numeric_grad(f, x, gy), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(grad_w, numeric_grad(f, conv_weight.data, gy), rtol=1e-6, atol=1e-8)


def test_each_module_backward_after_a_fused_forward_equals_the_fused_backward():
    """DistributedDataParallel runs each child's backward in turn after Sequential's fused
    forward: every module must hold a ctx its own backward can use (MaxPool2d after a fused
    Conv2d + ReLU + MaxPool2d holds F.relu_max_pool2d_forward's, and ReLU its output)."""
    rng = np.random.default_rng(3)
    pycore.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 3),
                          nn.LeakyReLU(0.1))
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    gy = rng.standard_normal((2, 3)).astype(np.float32)
    model(x)
    fused = model.backward(gy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model(x)
    g = gy
    for layer in reversed(list(model.children())):
        g = layer.backward(g)
    np.testing.assert_array_equal(g, fused)
    for p, expected in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, expected)
