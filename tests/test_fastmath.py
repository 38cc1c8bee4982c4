"""csrc/fastmath.h (vectorised float exp, sigmoid, tanh) through the Python ops that use it.

Every float32 result is compared with float64 numpy on the same float32 inputs, in ulps of
the float32 result (np.spacing of the correctly rounded reference; the smallest subnormal,
2^-149, for results that round to 0), on each SIMD path the CPU has: the baseline build
("generic"), AVX2+FMA and AVX-512, which simd.h picks after the GEMM's path.
"""
import numpy as np
import pytest

import pycore.functional as F

# the bounds stated in csrc/fastmath.h
SIGMOID_ULP = 2.5
TANH_ULP = 1.5


def _grid():
    """float32 inputs: special values, the whole exp range, tiny and huge magnitudes,
    subnormal inputs and random bit patterns."""
    rng = np.random.default_rng(7)
    f32 = np.finfo(np.float32)
    special = [0.0, -0.0, np.inf, -np.inf, 1e4, -1e4, 88.0, 88.72, 88.7228, 88.73, 89.0, -87.0,
               -87.33, -87.34, -100.0, -103.9, -103.97, -103.98, -104.0, -110.0, -111.0, 110.0,
               111.0, 0.625, -0.625, np.nextafter(np.float32(0.625), np.float32(0)), f32.max,
               -f32.max, f32.tiny, -f32.tiny, f32.smallest_subnormal, -f32.smallest_subnormal]
    dense = np.linspace(-105.0, 90.0, 200001)
    magnitudes = np.geomspace(1e-38, 1e38, 4001)
    subnormal_inputs = np.arange(1, 2000, dtype=np.uint32).view(np.float32).astype(np.float64) * 977.0
    random_bits = rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    random_bits = random_bits[np.isfinite(random_bits)].astype(np.float64)
    x = np.concatenate([special, dense, magnitudes, -magnitudes, subnormal_inputs, random_bits,
                        rng.uniform(-10, 10, 100000)])
    return x.astype(np.float32)


GRID = _grid()


def _ulp_error(got, ref):
    """|got - ref| in ulps of float32(ref) (2^-149 where that rounds to 0)."""
    ref32 = ref.astype(np.float32)
    ulp = np.spacing(np.abs(ref32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / ulp


def _check_special(got, x, ref):
    """NaN in gives NaN out; infinite references must be hit exactly."""
    assert np.array_equal(np.isnan(got), np.isnan(x))
    inf = np.isinf(ref)
    np.testing.assert_array_equal(got[inf], ref[inf].astype(np.float32))


def test_sigmoid_float32_within_bound(simd_path):
    x = np.concatenate([GRID, np.float32([np.nan, -np.nan])])
    with np.errstate(over="ignore", invalid="ignore"):
        x64 = x.astype(np.float64)
        ref = np.where(x64 < 0, np.exp(x64) / (1 + np.exp(x64)), 1 / (1 + np.exp(-x64)))
    got = F.sigmoid(x)
    assert got.dtype == np.float32
    _check_special(got, x, ref)
    finite = ~np.isnan(x)
    err = _ulp_error(got[finite], ref[finite])
    assert err.max() <= SIGMOID_ULP, f"x={x[finite][err.argmax()]!r}: {err.max():.2f} ulp"
    # the extremes: e^x itself down to subnormals, and exactly 0 / 1 at the ends
    assert F.sigmoid(np.float32([-100.0]))[0] > 0
    np.testing.assert_array_equal(F.sigmoid(np.float32([-np.inf, np.inf, 1e4, -1e4])), [0, 1, 1, 0])


def test_tanh_float32_within_bound(simd_path):
    x = np.concatenate([GRID, np.float32([np.nan, -np.nan])])
    ref = np.tanh(x.astype(np.float64))
    got = F.tanh(x)
    _check_special(got, x, ref)
    finite = ~np.isnan(x)
    err = _ulp_error(got[finite], ref[finite])
    assert err.max() <= TANH_ULP, f"x={x[finite][err.argmax()]!r}: {err.max():.2f} ulp"
    # tanh(x) = x to the last bit near 0, with the sign of zero kept
    tiny = np.float32([1e-30, -1e-20, 2e-5, -3e-4, np.finfo(np.float32).smallest_subnormal])
    np.testing.assert_array_equal(F.tanh(tiny), tiny)
    assert np.signbit(F.tanh(np.float32([-0.0]))[0])
    np.testing.assert_array_equal(F.tanh(np.float32([np.inf, -np.inf, 1e4, -1e4])), [1, -1, 1, -1])


@pytest.mark.parametrize("dim", [-1, 1])
def test_softmax_float32_exp_range(simd_path, dim):
    """Rows spanning the whole exp range (including results that are subnormal or round
    to 0), through the last-axis and the strided (inner > 1) code paths."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-110.0, 0.0, (6, 300, 5)).astype(np.float32)
    x[:, 0, :] = 0.0   # every softmax column has its max at 0: exp(x - max) = exp(x)
    x[0, 1, 0] = -np.inf
    x = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if dim == -1 else x
    y = F.softmax(x, dim=dim)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=dim, keepdims=True))
    ref = e / e.sum(axis=dim, keepdims=True)
    err = _ulp_error(y, ref)
    # exp to <= 1 ulp (1 unit of 2^-149 in the subnormals), the sum in double, one
    # multiplication by the rounded 1/sum: at most 3 ulp
    assert err.max() <= 3.0, f"{err.max():.2f} ulp"
    log_y = F.log_softmax(x, dim=dim)
    with np.errstate(divide="ignore"):
        log_ref = np.log(ref)
    finite = np.isfinite(log_ref)
    np.testing.assert_array_equal(log_y[~finite], log_ref[~finite])
    np.testing.assert_allclose(log_y[finite], log_ref[finite], rtol=2e-7, atol=1e-6)


def test_softmax_float32_rows_with_nan_and_inf(simd_path):
    x = np.float32([[0.0, 1.0, np.nan], [1e4, -1e4, 0.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 0.0]])
    y = F.softmax(x, dim=-1)
    assert np.isnan(y[0]).all()   # a NaN poisons its row, as in PyTorch
    np.testing.assert_array_equal(y[1], [1.0, 0.0, 0.0])
    assert np.isnan(y[2]).any()   # inf - inf
    np.testing.assert_array_equal(y[3], [0.0, 0.5, 0.5])


def test_backward_passes_use_the_same_exp(simd_path):
    """log_softmax backward takes exp of the saved output; cross entropy takes exp of the
    logits: compare with float64 on rows wide enough to run the vector loops."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((8, 67)) * 8).astype(np.float32)
    g = rng.standard_normal((8, 67)).astype(np.float32)
    y, ctx = F.log_softmax_forward(x, dim=-1)
    dx = F.log_softmax_backward(g, ctx)
    y64 = y.astype(np.float64)
    ref = g - np.exp(y64) * g.astype(np.float64).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(dx, ref, rtol=1e-5, atol=1e-5)
