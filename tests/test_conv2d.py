"""conv2d forward and backward against a naive direct-loop reference, PyTorch and finite differences."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pycore
import pycore.functional as F
import pycore.nn as nn

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}


# ---------------------------------------------------------------------------------------
# the reference: direct loops over output positions, in float64

def reference_pads(padding, kernel, dilation):
    """(top, bottom, left, right), PyTorch's rules, written out independently of pycore."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return ph, ph, pw, pw


def naive_conv2d(x, w, b, stride, pads, dilation, groups):
    """Forward and a closure for the backward, by direct loops over every output position."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c_in, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    ocg = c_out // groups
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    sh, sw = stride
    dh, dw = dilation
    h_out = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    w_out = (wd + left + right - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, c_out, h_out, w_out))

    def window(i, j):
        return (slice(None), slice(None), slice(i * sh, i * sh + dh * (kh - 1) + 1, dh),
                slice(j * sw, j * sw + dw * (kw - 1) + 1, dw))

    for g in range(groups):
        xs, os_ = slice(g * cg, (g + 1) * cg), slice(g * ocg, (g + 1) * ocg)
        for i in range(h_out):
            for j in range(w_out):
                patch = xp[:, xs][window(i, j)]                      # (n, cg, kh, kw)
                y[:, os_, i, j] = np.einsum("nckl,ockl->no", patch, w[os_])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]

    def backward(gy):
        gy = gy.astype(np.float64)
        gxp, gw = np.zeros_like(xp), np.zeros_like(w)
        for g in range(groups):
            xs, os_ = slice(g * cg, (g + 1) * cg), slice(g * ocg, (g + 1) * ocg)
            for i in range(h_out):
                for j in range(w_out):
                    patch = xp[:, xs][window(i, j)]
                    gw[os_] += np.einsum("no,nckl->ockl", gy[:, os_, i, j], patch)
                    gxp[:, xs][window(i, j)] += np.einsum("no,ockl->nckl", gy[:, os_, i, j], w[os_])
        gx = gxp[:, :, top:top + h, left:left + wd]
        return gx, gw, gy.sum(axis=(0, 2, 3))

    return y, backward


# ---------------------------------------------------------------------------------------
# the randomized grid

@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3, "depthwise"]))
    if groups == "depthwise":
        groups = draw(st.integers(1, 4))
        cg, ocg = 1, draw(st.integers(1, 2))
    else:
        cg, ocg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    choices = ["int", "pair", "valid"] + (["same"] if stride == (1, 1) else [])
    kind = draw(st.sampled_from(choices))
    padding = {"int": lambda: draw(st.integers(0, 2)),
               "pair": lambda: (draw(st.integers(0, 2)), draw(st.integers(0, 2))),
               "valid": lambda: "valid", "same": lambda: "same"}[kind]()
    pads = reference_pads(padding, kernel, dilation)
    # Sizes for which the kernel fits: at least its span minus the padding, plus some.
    h = max(1, dilation[0] * (kernel[0] - 1) + 1 - pads[0] - pads[1]) + draw(st.integers(0, 5))
    w = max(1, dilation[1] * (kernel[1] - 1) + 1 - pads[2] - pads[3]) + draw(st.integers(0, 5))
    return dict(n=draw(st.integers(1, 3)), c_in=cg * groups, c_out=ocg * groups, h=h, w=w, kernel=kernel,
                stride=stride if draw(st.booleans()) or stride[0] != stride[1] else stride[0],
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])), seed=draw(st.integers(0, 2 ** 16)))


def make_arrays(case):
    rng = np.random.default_rng(case["seed"])
    dt = case["dtype"]
    x = rng.standard_normal((case["n"], case["c_in"], case["h"], case["w"])).astype(dt)
    w = rng.standard_normal((case["c_out"], case["c_in"] // case["groups"]) + case["kernel"]).astype(dt)
    b = rng.standard_normal(case["c_out"]).astype(dt) if case["bias"] else None
    return rng, x, w, b


def hyper(case):
    return dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])


def run_pycore(x, w, b, gy, **kw):
    y, ctx = F.conv2d_forward(x, w, b, **kw)
    gw = np.zeros(w.shape, w.dtype)
    gb = None if b is None else np.zeros(b.shape, b.dtype)
    gx = F.conv2d_backward(gy, ctx, gw, gb)
    return y, gx, gw, gb


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(conv_cases())
def test_matches_naive_reference(case):
    rng, x, w, b = make_arrays(case)
    stride = case["stride"] if isinstance(case["stride"], tuple) else (case["stride"],) * 2
    pads = reference_pads(case["padding"], case["kernel"], case["dilation"])
    y_ref, backward = naive_conv2d(x, w, b, stride, pads, case["dilation"], case["groups"])
    gy = rng.standard_normal(y_ref.shape).astype(case["dtype"])
    y, gx, gw, gb = run_pycore(x, w, b, gy, **hyper(case))
    gx_ref, gw_ref, gb_ref = backward(gy)
    tol = TOL[case["dtype"]]
    assert y.dtype == case["dtype"] and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(gx, gx_ref, **tol)
    np.testing.assert_allclose(gw, gw_ref, **tol)
    if b is not None:
        np.testing.assert_allclose(gb, gb_ref, **tol)


@FAST
@given(conv_cases())
def test_matches_torch_autograd(case):
    torch = pytest.importorskip("torch")
    rng, x, w, b = make_arrays(case)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, **hyper(case))
    gy = rng.standard_normal(tuple(yt.shape)).astype(case["dtype"])
    yt.backward(torch.tensor(gy))
    y, gx, gw, gb = run_pycore(x, w, b, gy, **hyper(case))
    tol = TOL[case["dtype"]]
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(gw, wt.grad.numpy(), **tol)
    if b is not None:
        np.testing.assert_allclose(gb, bt.grad.numpy(), **tol)


# The kernel's distinct paths, each checked against the reference at a fixed shape:
# 1x1 (no im2col), batch 1 (threads inside the image), small images taken several to a
# column matrix (with a last chunk that is not full), several chunks per weight-gradient
# slice, a large image cut into tiles of output rows, strided and padded.
PATHS = {
    "pointwise": dict(n=3, c_in=4, c_out=5, h=5, w=6, kernel=(1, 1), stride=1, padding=0, dilation=(1, 1), groups=1),
    "pointwise-grouped": dict(n=2, c_in=4, c_out=6, h=3, w=4, kernel=(1, 1), stride=1, padding=0,
                              dilation=(1, 1), groups=2),
    "batch-1": dict(n=1, c_in=3, c_out=4, h=12, w=11, kernel=(3, 3), stride=1, padding=1, dilation=(1, 1), groups=1),
    "batch-40": dict(n=40, c_in=2, c_out=3, h=6, w=5, kernel=(3, 2), stride=(2, 1), padding=(1, 0),
                     dilation=(1, 1), groups=1),
    "chunks-ragged": dict(n=7, c_in=2, c_out=3, h=12, w=12, kernel=(3, 3), stride=1, padding=0,
                          dilation=(1, 1), groups=1),
    "chunks-grouped": dict(n=5, c_in=4, c_out=4, h=8, w=8, kernel=(3, 3), stride=1, padding=0, dilation=(1, 1),
                           groups=2),
    "many-slices": dict(n=60, c_in=1, c_out=2, h=22, w=24, kernel=(3, 3), stride=1, padding=1,
                        dilation=(1, 1), groups=1),
    "row-tiles": dict(n=1, c_in=16, c_out=40, h=70, w=72, kernel=(3, 3), stride=1, padding=1, dilation=(1, 1),
                      groups=1),
    "stride-2-wide": dict(n=2, c_in=3, c_out=20, h=9, w=29, kernel=(3, 3), stride=2, padding=1, dilation=(1, 1),
                          groups=1),  # im2col's vectorised stride-2 rows (15 outputs: vectors and a tail)
    "same-even": dict(n=2, c_in=2, c_out=2, h=7, w=6, kernel=(4, 2), stride=1, padding="same", dilation=(2, 1),
                      groups=1),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_kernel_paths(path, dtype):
    case = dict(PATHS[path], bias=True, dtype=dtype, seed=7)
    rng, x, w, b = make_arrays(case)
    stride = case["stride"] if isinstance(case["stride"], tuple) else (case["stride"],) * 2
    pads = reference_pads(case["padding"], case["kernel"], case["dilation"])
    y_ref, backward = naive_conv2d(x, w, b, stride, pads, case["dilation"], case["groups"])
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    for got, want in zip(run_pycore(x, w, b, gy, **hyper(case)), (y_ref,) + backward(gy)):
        np.testing.assert_allclose(got, want, **TOL[dtype])


ALGORITHM_SHAPES = [  # (N, C, H, W, OC, k, stride, padding, dilation, groups)
    (3, 1, 28, 28, 6, 5, 1, 0, 1, 1),     # LeNet conv1: direct (one vector of channels, or rows of 24)
    (2, 6, 14, 14, 16, 5, 1, 0, 1, 1),    # LeNet conv2: direct (two vectors / one zmm)
    (2, 3, 20, 37, 16, 3, 1, 1, 1, 1),    # direct_rows: two blocks of 8 channels, a last vector overlapping
    (2, 2, 9, 40, 3, 3, 1, 0, 1, 1),      # direct_rows: 3 channels of a block of 4, 7 rows (a pair's leftover)
    (2, 3, 17, 20, 5, 3, (2, 1), 0, (1, 2), 1),  # direct with strides and dilation
    (2, 4, 9, 11, 6, 3, 1, 1, 1, 1),      # padded: direct on a padded copy; implicit fills zeros
    (3, 1, 28, 28, 6, 5, 1, 2, 1, 1),     # LeNet-5's real conv1 (padding 2)
    (4, 4, 10, 10, 8, 3, 2, 2, 1, 2),     # groups, stride 2, small images staged together
    (1, 8, 40, 37, 12, 3, 1, 1, 1, 4),    # one image in row tiles, partial last panel
    (2, 3, 9, 29, 20, 3, 2, 1, 1, 1),     # im2col's vectorised stride-2 rows against implicit's element loop
    # 16 output channels on a depth K = 576 deeper than the GEMM's K slice: the channel
    # kernel would sum it in one chain, so im2col or the row kernel (in slices) takes it
    (2, 64, 9, 9, 16, 3, 1, 1, 1, 1),
    # col2im by input rows (Col2imRows): rows narrower than the input's (LeNet conv2 above)
    # and here wider, padded on the left, dilated, over several blocks of lanes
    (2, 3, 7, 37, 4, 3, 1, (2, 3), (1, 2), 1),
    # Forward tiles chosen to fill whole NR-wide panels (forward_tile_rows): 8 rows of 28
    # (7 panels of 32 on AVX-512) and a 4-row rest; 64 and 40 output channels packed in
    # the 8-row tile; 30-wide rows that fill no panel exactly.
    (1, 32, 28, 28, 64, 3, 1, 1, 1, 1),
    (2, 16, 30, 30, 40, 3, 1, 1, 1, 1),
    # K = 576 over the GEMM's K slices (512 or 384 floats): the row kernel's forward adds
    # its slices' sums in the GEMM's order
    (2, 64, 6, 18, 20, 3, 1, 1, 1, 1),
]


@pytest.mark.skipif(pycore._C.sanitize_build,
                    reason="the -O1 sanitizer build may contract a*b+c into FMAs differently "
                           "in different kernels (1-ulp differences); the -O3 build compares the bits")
@pytest.mark.parametrize("simd_path", ["auto", "avx2+fma", "generic"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_algorithms_agree_bitwise(simd_path, dtype):
    """Forward: im2col, implicit GEMM and the direct kernel sum in the same order: the same
    bits, and the naive reference's values, with and without a fused activation. Backward
    (direct or GEMM weight gradient): the reference's values."""
    from pycore import _C
    if not _C.set_simd_path(simd_path):
        pytest.skip(f"no {simd_path} on this CPU")
    rng = np.random.default_rng(11)
    try:
        for n, c, h, w, oc, k, stride, padding, dilation, groups in ALGORITHM_SHAPES:
            x = rng.standard_normal((n, c, h, w)).astype(dtype)
            weight = rng.standard_normal((oc, c // groups, k, k)).astype(dtype)
            bias = rng.standard_normal(oc).astype(dtype)
            kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
            results = {}
            for algorithm in ("im2col", "implicit", "direct", "direct_rows", "auto"):
                _C.conv2d_set_algorithm(algorithm)
                results[algorithm] = [F.conv2d(x, weight, bias, **kwargs),
                                      F.conv2d(x, weight, None, activation="sigmoid", **kwargs)]
            for algorithm, (plain, fused) in results.items():
                np.testing.assert_array_equal(plain, results["im2col"][0], err_msg=algorithm)
                np.testing.assert_array_equal(fused, results["im2col"][1], err_msg=algorithm)
            pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
            pads = reference_pads(padding, (k, k), pair(dilation))
            y_ref, backward = naive_conv2d(x, weight, bias, pair(stride), pads, pair(dilation), groups)
            np.testing.assert_allclose(results["auto"][0], y_ref, **TOL[dtype])
            # Backward: the direct weight gradient (where it applies) and the GEMM's.
            gy = rng.standard_normal(y_ref.shape).astype(dtype)
            want = backward(gy)
            for algorithm in ("im2col", "direct", "direct_rows"):
                _C.conv2d_set_algorithm(algorithm)
                gw, gb = np.zeros_like(weight), np.zeros_like(bias)
                gx = F.conv2d_backward(gy, F.conv2d_forward(x, weight, **kwargs)[1], gw, gb)
                for got, expected in zip((gx, gw, gb), want):
                    np.testing.assert_allclose(got, expected, **TOL[dtype], err_msg=algorithm)
    finally:
        _C.conv2d_set_algorithm("auto")
        _C.set_simd_path("auto")
    with pytest.raises(ValueError, match="conv2d_set_algorithm"):
        _C.conv2d_set_algorithm("winograd")


ROWS_SHAPES = [  # (N, C, H, W, OC, k, stride, padding, dilation): the row kernel's edges on every path
    (16, 1, 28, 28, 6, 5, 1, 2, 1),            # LeNet conv1 (rows of 28: 16 + 12 on AVX-512)
    (2, 2, 9, 40, 3, 3, 1, 0, 1),              # 3 channels, 7 rows, 38 columns
    (3, 3, 12, 37, 16, 3, (2, 1), 1, (1, 2)),  # two channel blocks, stride_h 2, dilation along the rows
    (5, 2, 6, 17, 5, 3, 1, 1, 1),              # 17 columns: one AVX-512 vector and one overlapping it
    # more than 16 channels (blocks of 8 or 6, forward only) in tiles of rows copied with
    # their padding; the second over the GEMM's K slices
    (3, 24, 11, 18, 20, 3, 1, (2, 1), 1),
    (2, 64, 5, 17, 18, 3, (2, 1), 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_rows_kernel(simd_path, dtype):
    """The row kernel forced (conv2d_set_algorithm("direct_rows")) on shapes that reach its
    leftover rows, vectors and channels: forward and weight gradient against the float64
    reference, and the same bits at 1 and 2 threads (images, resp. blocks of channels and
    taps, per thread). Runs in the sanitizer build too: no read outside the buffers."""
    from pycore import _C
    rng = np.random.default_rng(5)
    before = pycore.get_num_threads()
    try:
        _C.conv2d_set_algorithm("direct_rows")
        for n, c, h, w, oc, k, stride, padding, dilation in ROWS_SHAPES:
            x = rng.standard_normal((n, c, h, w)).astype(dtype)
            weight = rng.standard_normal((oc, c, k, k)).astype(dtype)
            bias = rng.standard_normal(oc).astype(dtype)
            pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
            pads = reference_pads(padding, (k, k), pair(dilation))
            y_ref, backward = naive_conv2d(x, weight, bias, pair(stride), pads, pair(dilation), 1)
            gy = rng.standard_normal(y_ref.shape).astype(dtype)
            _, gw_ref, gb_ref = backward(gy)
            results = []
            for threads in (1, 2):
                pycore.set_num_threads(threads)
                y, ctx = F.conv2d_forward(x, weight, bias, stride=stride, padding=padding, dilation=dilation)
                gw, gb = np.zeros_like(weight), np.zeros_like(bias)
                F.conv2d_backward(gy, ctx, gw, gb, need_input_grad=False)
                for got, want in ((y, y_ref), (gw, gw_ref), (gb, gb_ref)):
                    np.testing.assert_allclose(got, want, **TOL[dtype])
                results.append((y, gw))
            for one, two in zip(*results):
                np.testing.assert_array_equal(one, two)
    finally:
        pycore.set_num_threads(before)
        _C.conv2d_set_algorithm("auto")


def direct_kernels_on_this_path(rng):
    """Whether this build runs the direct kernels on the current SIMD path: they always run on
    the baseline; on AVX2/AVX-512 only with simd.h's per-ISA copies (not in a
    PYCORE_FORCE_PORTABLE build), which the row kernel's weight gradient shows, its sums in
    another order than the GEMM's on LeNet conv1."""
    from pycore import _C
    if _C.simd_path() == "generic":
        return True
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    weight = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    gy = rng.standard_normal((4, 6, 24, 24)).astype(np.float32)
    grads = {}
    try:
        for algorithm in ("direct_rows", "im2col"):
            _C.conv2d_set_algorithm(algorithm)
            grads[algorithm] = np.zeros_like(weight)
            F.conv2d_backward(gy, F.conv2d_forward(x, weight)[1], grads[algorithm], need_input_grad=False)
    finally:
        _C.conv2d_set_algorithm("auto")
    return not np.array_equal(grads["direct_rows"], grads["im2col"])


INPUT_GRAD_SHAPES = [  # (N, C, H, W, OC, k, padding): the channel kernel's input gradient
    (2, 6, 14, 14, 16, 5, 0),        # LeNet conv2: one block of 6 channels, 16 output channels
    (2, 12, 9, 11, 8, 3, 1),         # two blocks of 6; 8 output channels (one ymm on AVX2)
    (3, 11, 8, 10, 5, 3, (2, 1)),    # blocks of 6, 3 and 2; the padding reaches past the taps
    (2, 7, 6, 9, 13, 5, 2),          # 6 and 1; every row and column near an edge
    (1, 6, 12, 5, 16, 3, 0),         # rows narrower than a vector
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_input_gradient(simd_path, dtype):
    """The channel kernel's input gradient (stride 1, at least 6 input channels) against the
    float64 reference, the same bits at 1 and 2 threads (images per thread), and taken by
    "auto" (its bits, not the GEMM and col2im's) on LeNet conv2."""
    from pycore import _C
    rng = np.random.default_rng(12)
    before = pycore.get_num_threads()
    try:
        for n, c, h, w, oc, k, padding in INPUT_GRAD_SHAPES:
            x = rng.standard_normal((n, c, h, w)).astype(dtype)
            weight = rng.standard_normal((oc, c, k, k)).astype(dtype)
            pads = reference_pads(padding, (k, k), (1, 1))
            y_ref, backward = naive_conv2d(x, weight, None, (1, 1), pads, (1, 1), 1)
            gy = rng.standard_normal(y_ref.shape).astype(dtype)
            gx_ref = backward(gy)[0]
            results = {}
            for algorithm, threads in (("direct", 1), ("direct", 2), ("auto", 1), ("im2col", 1)):
                _C.conv2d_set_algorithm(algorithm)
                pycore.set_num_threads(threads)
                ctx = F.conv2d_forward(x, weight, padding=padding)[1]
                results[algorithm, threads] = F.conv2d_backward(gy, ctx)
                np.testing.assert_allclose(results[algorithm, threads], gx_ref, **TOL[dtype],
                                           err_msg=f"{algorithm} {threads} threads {(n, c, h, w, oc, k, padding)}")
            np.testing.assert_array_equal(results["direct", 1], results["direct", 2])
            np.testing.assert_array_equal(results["auto", 1], results["direct", 1])
            if c == 6 and oc == 16 and dtype == np.float32 and direct_kernels_on_this_path(rng):
                # LeNet conv2 (16 float channels: one 64-byte vector; as doubles the channel
                # kernel does not take them): the direct sums differ from the GEMM's in the last bits
                assert not np.array_equal(results["direct", 1], results["im2col", 1])
    finally:
        pycore.set_num_threads(before)
        _C.conv2d_set_algorithm("auto")


@pytest.mark.parametrize("simd_path", ["avx512f", "avx2+fma"])
def test_auto_takes_rows_for_lenet_conv1_channels_for_conv2(simd_path):
    """The measured choice (use_direct_rows): LeNet conv1's weight gradient has the row
    kernel's bits under "auto", LeNet conv2's the channel kernel's (on AVX2 the row kernel
    applies to its 10-wide rows but fills 10 of 16 lanes)."""
    from pycore import _C
    if not _C.set_simd_path(simd_path):
        pytest.skip(f"no {simd_path} on this CPU")
    rng = np.random.default_rng(8)
    try:
        for (n, c, h, oc, padding), expected in (((8, 1, 28, 6, 2), "direct_rows"), ((8, 6, 14, 16, 0), "direct")):
            x = rng.standard_normal((n, c, h, h)).astype(np.float32)
            weight = rng.standard_normal((oc, c, 5, 5)).astype(np.float32)
            gy = rng.standard_normal((n, oc, h + 2 * padding - 4, h + 2 * padding - 4)).astype(np.float32)
            grads = {}
            for algorithm in ("im2col", "direct", "direct_rows", "auto"):
                _C.conv2d_set_algorithm(algorithm)
                gw = np.zeros_like(weight)
                F.conv2d_backward(gy, F.conv2d_forward(x, weight, padding=padding)[1], gw, None,
                                  need_input_grad=False)
                grads[algorithm] = gw
            if all(np.array_equal(grads[a], grads["im2col"]) for a in ("direct", "direct_rows")):
                # no direct kernel on this path in this build: without simd.h's per-ISA copies
                # (PYCORE_FORCE_PORTABLE, MSVC) they run on the baseline only
                continue
            other = "direct" if expected == "direct_rows" else "direct_rows"
            if expected == "direct" and np.array_equal(grads["direct"], grads["direct_rows"]):
                continue  # the row kernel does not apply here (conv2's rows on AVX-512): nothing to tell apart
            np.testing.assert_array_equal(grads["auto"], grads[expected])
            assert not np.array_equal(grads["auto"], grads[other])
    finally:
        _C.conv2d_set_algorithm("auto")
        _C.set_simd_path("auto")


def test_same_padding_keeps_size_and_pads_bottom_right():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 4, 4] = 1.0                      # only the bottom-right pixel
    w = np.ones((1, 1, 2, 2))
    y = F.conv2d(x, w, padding="same")       # total padding 1 per axis: 0 before, 1 after
    assert y.shape == (1, 1, 5, 5)
    expected = np.zeros((5, 5))
    expected[3:, 3:] = 1.0                   # windows starting at (3|4, 3|4) cover it
    np.testing.assert_array_equal(y[0, 0], expected)


def test_cross_correlation_not_convolution():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    assert F.conv2d(x, w)[0, 0, 0, 0] == np.sum(x * w)          # no flip of w


def test_finite_differences_float64():
    rng = np.random.default_rng(3)
    kw = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = rng.standard_normal((2, 4, 6, 7))
    w = rng.standard_normal((4, 2, 3, 2))
    b = rng.standard_normal(4)
    gy = rng.standard_normal(F.conv2d(x, w, b, **kw).shape)

    def loss(x_, w_, b_):
        return float(np.sum(F.conv2d(x_, w_, b_, **kw) * gy))

    _, gx, gw, gb = run_pycore(x, w, b, gy, **kw)
    eps = 1e-6
    for name, arr, grad in (("x", x, gx), ("w", w, gw), ("b", b, gb)):
        flat = arr.reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 12), replace=False):
            saved = flat[i]
            flat[i] = saved + eps
            up = loss(x, w, b)
            flat[i] = saved - eps
            down = loss(x, w, b)
            flat[i] = saved
            assert abs((up - down) / (2 * eps) - grad.reshape(-1)[i]) < 1e-6, (name, i)


# ---------------------------------------------------------------------------------------
# the Conv2d module

@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=2, padding=1),
                                    dict(kernel_size=3, padding="same", dilation=2, groups=2, bias=False),
                                    dict(kernel_size=(4, 1), padding="valid", groups=4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_matches_torch_module(kwargs, dtype):
    torch = pytest.importorskip("torch")
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    torch.manual_seed(0)
    tm = torch.nn.Conv2d(4, 8, **kwargs).to(tdtype)
    m = nn.Conv2d(4, 8, **kwargs, dtype=dtype)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    assert repr(m) == repr(tm)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 8)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = tm(xt)
    y = m(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    gy = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(gy))
    gx = m.backward(gy)
    np.testing.assert_allclose(gx, xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(m.weight.grad, tm.weight.grad.numpy(), **TOL[dtype])
    if m.bias is not None:
        np.testing.assert_allclose(m.bias.grad, tm.bias.grad.numpy(), **TOL[dtype])


def test_module_init_follows_pytorch():
    pycore.manual_seed(5)
    m = nn.Conv2d(6, 12, (3, 5), groups=3)
    bound = 1 / np.sqrt(2 * 3 * 5)                               # fan_in = C_in/groups * kH * kW
    assert m.weight.shape == (12, 2, 3, 5) and m.bias.shape == (12,)
    assert m.weight.dtype == np.float32 and np.abs(m.weight.data).max() <= bound
    assert np.abs(m.weight.data).max() > 0.8 * bound            # uniform over the whole range
    assert np.abs(m.bias.data).max() <= bound
    assert [k for k, _ in m.named_parameters()] == ["weight", "bias"]
    pycore.manual_seed(5)
    np.testing.assert_array_equal(nn.Conv2d(6, 12, (3, 5), groups=3).weight.data, m.weight.data)


def test_first_layer_skips_input_grad_and_grads_accumulate():
    rng = np.random.default_rng(0)
    m = nn.Conv2d(3, 4, 3, padding=1)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    gy = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    m(x)
    assert m.backward(gy).shape == x.shape
    gw1, gb1 = m.weight.grad.copy(), m.bias.grad.copy()
    assert np.abs(gw1).sum() > 0
    m.requires_input_grad = False
    m(x)
    assert m.backward(gy) is None
    np.testing.assert_allclose(m.weight.grad, 2 * gw1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.bias.grad, 2 * gb1, rtol=1e-5, atol=1e-6)
    m.zero_grad()
    assert not m.weight.grad.any()


def test_module_call_order_and_input_checks():
    m = nn.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match="forward first"):
        m.backward(np.zeros((1, 4, 2, 2), np.float32))
    with pytest.raises(TypeError, match="Conv2d: input: dtype float64"):
        m(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="expected input with 3 channels"):
        m(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        m(np.zeros((3, 5, 5), np.float32))
    m(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="grad_output: expected shape"):
        m.backward(np.zeros((1, 4, 2, 2), np.float32))
    m.to(np.float64)
    assert m(np.zeros((1, 3, 5, 5))).dtype == np.float64
    with pycore.no_grad():
        m(np.zeros((1, 3, 5, 5)))
    with pytest.raises(RuntimeError):
        m.backward(np.zeros((1, 4, 3, 3)))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=4), ValueError, "out_channels.*groups"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, groups=2), ValueError, "in_channels.*groups"),
    (dict(in_channels=3, out_channels=6, kernel_size=0), ValueError, "kernel_size"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, stride=2, padding="same"), ValueError, "same"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, padding=-1), ValueError, "padding"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, padding="full"), ValueError, "padding"),
    (dict(in_channels=3, out_channels=6, kernel_size=2.5), TypeError, "kernel_size"),
    (dict(in_channels=3, out_channels=6, kernel_size=3, dtype=np.int32), TypeError, "dtype"),
])
def test_module_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        nn.Conv2d(**kwargs)


# ---------------------------------------------------------------------------------------
# bad inputs to the functional form: each raises before any C++ runs, naming the argument

X = np.zeros((2, 4, 8, 8), np.float32)
W = np.zeros((6, 4, 3, 3), np.float32)


@pytest.mark.parametrize("args,kwargs,exc,match", [
    ((X[0], W), {}, ValueError, r"input: expected a 4-D array \(N, C_in, H, W\), got shape \(4, 8, 8\)"),
    ((X, W[0]), {}, ValueError, r"weight: expected a 4-D array"),
    ((X.astype(np.int64), W), {}, TypeError, "input: expected a float32 or float64 array, got dtype int64"),
    ((X, W.astype(np.float64)), {}, TypeError, "weight: dtype float64 does not match the input's dtype float32"),
    (("not an array", W), {}, TypeError, "input"),
    ((X, np.zeros((6, 3, 3, 3), np.float32)), {}, ValueError, r"weight.*3 \* 1 != 4"),
    ((X, np.zeros((6, 2, 3, 3), np.float32)), dict(groups=3), ValueError, "groups: must divide the input channels"),
    ((X, np.zeros((5, 2, 3, 3), np.float32)), dict(groups=2), ValueError, "groups: must divide the output channels"),
    ((X, np.zeros((6, 4, 9, 3), np.float32)), {}, ValueError, "weight: the kernel .* larger than the padded input"),
    ((X, W), dict(dilation=5), ValueError, "weight: the kernel .* larger than the padded input"),
    ((X, np.zeros((6, 4, 0, 3), np.float32)), {}, ValueError, "weight: expected shape .* >= 1"),
    ((X, W), dict(stride=0), ValueError, "stride: expected an int >= 1, got 0"),
    ((X, W), dict(stride=(1, -2)), ValueError, "stride"),
    ((X, W), dict(stride=1.5), TypeError, "stride"),
    ((X, W), dict(dilation=0), ValueError, "dilation: expected an int >= 1"),
    ((X, W), dict(groups=0), ValueError, "groups: expected an int >= 1"),
    ((X, W), dict(padding=-1), ValueError, "padding: expected an int >= 0, got -1"),
    ((X, W), dict(padding=(1, 2, 3)), ValueError, "padding"),
    ((X, W), dict(padding="full"), ValueError, "padding: expected .*'valid' or 'same', got 'full'"),
    ((X, W), dict(padding=1.0), TypeError, "padding"),
    ((X, W), dict(padding="same", stride=2), ValueError, "padding: 'same' is not supported for strided"),
    ((X, W, np.zeros(5, np.float32)), {}, ValueError, r"bias: expected shape \(6,\)"),
    ((X, W, np.zeros(6, np.float64)), {}, TypeError, "bias: dtype float64"),
    ((X, W, np.zeros((6, 1), np.float32)), {}, ValueError, "bias: expected a 1-D array"),
    ((np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1))), dict(padding=2 ** 61), ValueError,
     "input: the output would hold .* more than int64"),
])
def test_conv2d_rejects_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        F.conv2d(*args, **kwargs)


def test_conv2d_backward_rejects_bad_buffers():
    gy = np.zeros((2, 6, 6, 6), np.float32)
    _, ctx = F.conv2d_forward(X, W)
    with pytest.raises(TypeError, match="ctx: expected the Conv2dContext that conv2d_forward returned, got tuple"):
        F.conv2d_backward(gy, (X, W))
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(2, 6, 6, 6\)"):
        F.conv2d_backward(gy[:, :, :5], ctx)
    with pytest.raises(TypeError, match="grad_output: dtype float64"):
        F.conv2d_backward(gy.astype(np.float64), ctx)
    with pytest.raises(TypeError, match="grad_weight: dtype float64"):
        F.conv2d_backward(gy, ctx, grad_weight=np.zeros(W.shape))
    with pytest.raises(ValueError, match=r"grad_weight: expected shape \(6, 4, 3, 3\)"):
        F.conv2d_backward(gy, ctx, grad_weight=np.zeros((6, 4, 3, 2), np.float32))
    with pytest.raises(ValueError, match="grad_weight: must be C-contiguous and writeable"):
        F.conv2d_backward(gy, ctx, grad_weight=np.zeros((3, 3, 4, 6), np.float32).T)
    ro = np.zeros(6, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="grad_bias: must be C-contiguous and writeable"):
        F.conv2d_backward(gy, ctx, grad_bias=ro)
    with pytest.raises(TypeError, match="grad_bias: expected a numpy array"):
        F.conv2d_backward(gy, ctx, grad_bias=[0.0] * 6)


# ---------------------------------------------------------------------------------------
# layouts and threads

def _layouts(a):
    """The same values as `a` in other memory layouts."""
    fortran = np.asfortranarray(a)
    strided = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)[..., ::2]
    strided[...] = a
    flipped = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    readonly = a.copy()
    readonly.flags.writeable = False
    return {"fortran": fortran, "strided": strided, "negative": flipped, "readonly": readonly}


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative", "readonly"])
def test_layouts_give_the_contiguous_result(layout):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    kw = dict(stride=(1, 2), padding=1, groups=2)
    gy = rng.standard_normal(F.conv2d(x, w, b, **kw).shape).astype(np.float32)
    expected = run_pycore(x, w, b, gy, **kw)
    got = run_pycore(_layouts(x)[layout], _layouts(w)[layout], _layouts(b)[layout], _layouts(gy)[layout], **kw)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("padding", [1, 0])  # the direct kernels (8 channels), on a padded copy or in place
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,first_layer", [(1, False), (5, False), (7, False), (40, True), (40, False)])
def test_one_and_two_threads_agree_bitwise(n, first_layer, dtype, padding):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 6, 12, 10)).astype(dtype)
    w = rng.standard_normal((8, 6, 3, 3)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    gy = rng.standard_normal((n, 8, 10 + 2 * padding, 8 + 2 * padding)).astype(dtype)
    before = pycore.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            y, ctx = F.conv2d_forward(x, w, b, padding=padding)
            gw, gb = np.zeros_like(w), np.zeros_like(b)
            gx = F.conv2d_backward(gy, ctx, gw, gb, need_input_grad=not first_layer)
            results.append((y, gx, gw, gb))
    finally:
        pycore.set_num_threads(before)
    for one, two in zip(*results):
        if one is None:
            assert two is None
        else:
            np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("n", [1, 3])
def test_row_tiles_one_and_two_threads_agree_bitwise(n):
    """A 3x3 layer of 32 -> 64 channels on 28x28 images: the forward cuts each image into
    tiles of rows (8 + 8 + 8 + 4 on AVX-512), which the threads take whole (a batch of 3) or
    one at a time with the GEMM split (a batch of 1); the bits must not depend on that."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 32, 28, 28)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    gy = rng.standard_normal((n, 64, 28, 28)).astype(np.float32)
    before = pycore.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            results.append(run_pycore(x, w, b, gy, padding=1))
    finally:
        pycore.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
