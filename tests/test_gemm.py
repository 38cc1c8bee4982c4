"""pycore.functional.matmul / gemm against numpy, across shapes, layouts, dtypes and threads."""
import multiprocessing as mp

import numpy as np
import pytest

import pycore
import pycore.functional as F
from pycore import _C

SHAPES = [(1, 1, 1), (1, 37, 5), (37, 1, 5), (5, 7, 1), (7, 13, 5), (31, 17, 29), (64, 64, 64),
          (97, 101, 103), (6, 16, 300), (130, 70, 520), (0, 4, 3), (4, 0, 3), (4, 3, 0), (1, 1030, 7),
          # M == 1 (the GEMV path): full column blocks, single vectors and scalar tails.
          (1, 300, 70), (1, 203, 33), (1, 120, 33), (2, 130, 50),
          # Several row blocks (M > MC), K slices (K > KC), several groups of B panels, a
          # partial last panel: every branch of the packed loops at once.
          (150, 197, 400),
          # The same beyond the AVX-512 float blocking (MC = 432, KC = 512).
          (440, 37, 530),
          # Few columns, many rows: computed as C^T = op(B)^T op(A)^T (gemm.cpp,
          # transposed_product_pays) on every path; with trans_a also where no column is padded.
          (300, 10, 40), (400, 96, 400)]
TOL = {np.float32: dict(rtol=2e-4, atol=2e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}
SIMD_PATHS = [p for p in ("generic", "avx2+fma", "avx512f") if _C.set_simd_path(p)]
_C.set_simd_path("auto")


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    return a, b, ref


@pytest.fixture(params=SIMD_PATHS)
def simd_path(request):
    assert _C.set_simd_path(request.param)
    yield request.param
    _C.set_simd_path("auto")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("mnk", SHAPES)
def test_matmul_matches_numpy(simd_path, rng, mnk, ta, tb, dtype):
    a, b, ref = operands(rng, *mnk, ta, tb, dtype)
    out = F.matmul(a, b, trans_a=ta, trans_b=tb)
    assert out.dtype == dtype and out.shape == ref.shape
    np.testing.assert_allclose(out, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (0.0, 3.0), (1.0, -1.0)])
def test_gemm_alpha_beta(rng, dtype, alpha, beta):
    a, b, ref = operands(rng, 45, 67, 300, True, False, dtype)
    c0 = rng.standard_normal(ref.shape).astype(dtype)
    c = c0.copy()
    out = F.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=True)
    assert out is c
    np.testing.assert_allclose(c, alpha * ref + beta * c0, **TOL[dtype])


def test_beta_zero_never_reads_c(rng):
    a, b, ref = operands(rng, 20, 30, 10, False, False, np.float32)
    c = np.full(ref.shape, np.nan, dtype=np.float32)
    F.gemm(a, b, c, beta=0.0)
    np.testing.assert_allclose(c, ref, **TOL[np.float32])


def test_k_zero_scales_c():
    c = np.ones((3, 4))
    F.gemm(np.zeros((3, 0)), np.zeros((0, 4)), c, beta=2.0)
    np.testing.assert_array_equal(c, 2.0)
    np.testing.assert_array_equal(F.matmul(np.zeros((3, 0)), np.zeros((0, 4))), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_and_two_threads_agree(rng, dtype):
    a, b, _ = operands(rng, 300, 260, 270, False, True, dtype)
    before = pycore.get_num_threads()
    try:
        pycore.set_num_threads(1)
        one = F.matmul(a, b, trans_b=True)
        pycore.set_num_threads(2)
        two = F.matmul(a, b, trans_b=True)
    finally:
        pycore.set_num_threads(before)
    # K is never split across threads, so every element is summed in the same order.
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
def test_one_row_alpha_beta(simd_path, rng, dtype, ta, tb):
    a, b, ref = operands(rng, 1, 131, 75, ta, tb, dtype)
    c0 = rng.standard_normal(ref.shape).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (-0.5, 2.0), (2.0, 1.0)]:
        c = c0.copy()
        F.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb)
        np.testing.assert_allclose(c, alpha * ref + beta * c0, **TOL[dtype])
    c = np.full(ref.shape, np.nan, dtype=dtype)
    F.gemm(a, b, c, beta=0.0, trans_a=ta, trans_b=tb)  # beta == 0 never reads C
    np.testing.assert_allclose(c, ref, **TOL[dtype])


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("m", [1, 40])
def test_strided_slices_are_read_in_place_correctly(simd_path, rng, ta, tb, m):
    # Operands that are column/row windows of wider matrices (leading dimension larger
    # than the row), as a layer's weight slice or a gate block would be. With trans_a
    # and M == 1, op(A)'s single row is a strided column of the stored matrix.
    k, n = 37, 29
    wide_a = rng.standard_normal((k + 3, m + 11) if ta else (m + 3, k + 11))
    wide_b = rng.standard_normal((n + 3, k + 9) if tb else (k + 3, n + 9))
    a = wide_a[2:2 + k, 5:5 + m] if ta else wide_a[2:2 + m, 5:5 + k]
    b = wide_b[1:1 + n, 4:4 + k] if tb else wide_b[1:1 + k, 4:4 + n]
    assert not b.flags.c_contiguous and not b.flags.f_contiguous
    ref = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(F.matmul(a, b, trans_a=ta, trans_b=tb), ref, rtol=1e-12, atol=1e-12)
    # The same windows of Fortran-ordered matrices (unit stride down the columns).
    fa, fb = np.asfortranarray(wide_a), np.asfortranarray(wide_b)
    a = fa[2:2 + k, 5:5 + m] if ta else fa[2:2 + m, 5:5 + k]
    b = fb[1:1 + n, 4:4 + k] if tb else fb[1:1 + k, 4:4 + n]
    np.testing.assert_allclose(F.matmul(a, b, trans_a=ta, trans_b=tb), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m,n,k,tb", [(150, 197, 400, False), (32, 1030, 260, True), (1, 4100, 520, True),
                                      (1, 4100, 520, False), (1, 530, 260, True), (1, 1030, 200, False),
                                      (1, 256, 1024, False), (1, 200, 520, False)])
def test_one_and_two_threads_agree_on_every_path(simd_path, rng, m, n, k, tb):
    # Packed path with several row blocks and K slices, a recurrent step's few rows
    # (the shorter tile), and the M == 1 path split over columns, also where a thread's
    # share ends in a partial column block, and a batch-1 LSTM's backward GEMV at H = 256
    # (1 x 1024 @ 1024 x 256; all large enough that they use two threads).
    a, b, _ = operands(rng, m, n, k, False, tb, np.float32)
    before = pycore.get_num_threads()
    try:
        pycore.set_num_threads(1)
        one = F.matmul(a, b, trans_b=tb)
        pycore.set_num_threads(2)
        two = F.matmul(a, b, trans_b=tb)
    finally:
        pycore.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [8, 16, 20, 32, 64])
def test_short_row_tile_gives_the_bits_of_the_tall_one(simd_path, rng, m, dtype):
    # gemm takes the kernel's shorter tile for a few rows where it pads less (8 rows
    # against 12 on AVX-512: M = 32 or 64, a recurrent layer's batch); a packing of A
    # keeps the tile it was packed for. Every element is the same sum either way.
    a, b, ref = operands(rng, m, 100, 400, False, True, dtype)
    plain = F.matmul(a, b, trans_b=True)
    tall = _C.gemm_prepacked("a", a, b, [np.zeros_like(plain)], trans_b=True)[0]
    np.testing.assert_allclose(plain, ref, **TOL[dtype])
    np.testing.assert_array_equal(plain, tall)


@pytest.mark.parametrize("layout", ["transposed", "sliced", "negative", "fortran", "readonly", "broadcast"])
def test_any_layout_gives_the_right_answer(rng, layout):
    base = rng.standard_normal((40, 60))
    a = {
        "transposed": base.T,
        "sliced": base[::2, 5:50:3],
        "negative": base[::-1, ::-1],
        "fortran": np.asfortranarray(base),
        "readonly": base.copy(),
        "broadcast": np.broadcast_to(base[:1], (40, 60)),
    }[layout]
    if layout == "readonly":
        a.flags.writeable = False
    b = rng.standard_normal((a.shape[1], 9))
    np.testing.assert_allclose(F.matmul(a, b), np.asarray(a) @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F.matmul(b.T, a.T, trans_a=False), b.T @ np.asarray(a).T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float16, object, np.complex64, bool])
def test_wrong_dtype_is_a_type_error_naming_it(dtype):
    a = np.ones((2, 2), dtype=dtype)
    with pytest.raises(TypeError, match=np.dtype(dtype).name if dtype is not object else "object"):
        F.matmul(a, np.ones((2, 2)))


def test_mixed_dtypes_are_refused():
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        F.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float64))


def test_mismatched_shapes_name_both():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 6\)"):
        F.matmul(np.ones((3, 4)), np.ones((5, 6)))
    with pytest.raises(ValueError, match="2-D"):
        F.matmul(np.ones(3), np.ones((3, 2)))


def test_bad_output_array_is_refused():
    a, b = np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(ValueError, match="shape"):
        F.gemm(a, b, np.zeros((4, 2)))
    with pytest.raises(TypeError, match="dtype"):
        F.gemm(a, b, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        F.gemm(a, b, np.zeros((4, 2)).T)
    ro = np.zeros((2, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        F.gemm(a, b, ro)


def test_thread_count_api():
    before = pycore.get_num_threads()
    try:
        pycore.set_num_threads(1)
        assert pycore.get_num_threads() == 1
        with pytest.raises(ValueError):
            pycore.set_num_threads(0)
        with pytest.raises(TypeError):
            pycore.set_num_threads(1.5)
    finally:
        pycore.set_num_threads(before)


def _child_matmul(queue):
    a = np.ones((200, 200), np.float32)
    queue.put(float(F.matmul(a, a)[0, 0]))


def test_fork_after_parallel_kernels_does_not_hang():
    pycore.set_num_threads(2)
    a = np.ones((300, 300), np.float32)
    F.matmul(a, a)  # start the OpenMP thread pool in the parent
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_matmul, args=(queue,))
    proc.start()
    proc.join(timeout=60)
    if proc.is_alive():
        proc.kill()
        pytest.fail("the forked child hung in a pycore kernel")
    assert proc.exitcode == 0
    assert queue.get(timeout=5) == 200.0


def test_show_config_reports_the_build(capsys):
    pycore.show_config()
    out = capsys.readouterr().out
    for word in ("pycore", "openmp", "simd path", "threads", "compiler"):
        assert word in out


# ---------------------------------------------------------------------------------
# PackedMatrix: one operand packed once (as a recurrent layer packs W_hh, a convolution
# its weight) and reused by gemm_packed_a / gemm_packed_b. The contract is bitwise
# equality with plain gemm on the same operands, so that is what these compare, besides
# a float64 reference for the values themselves.

PACKED_SHAPES = [(1, 1, 1), (1, 37, 5), (37, 1, 5), (5, 7, 1), (7, 13, 5), (2, 130, 50),
                 (31, 17, 29), (97, 101, 103), (1, 300, 70), (0, 4, 3), (4, 0, 3), (4, 3, 0),
                 # Several row blocks (M > MC), K slices (K > KC), partial last panels, and
                 # N over one column block (NC = 1024 for float64).
                 (150, 197, 400), (40, 1030, 270),
                 # Few columns: plain gemm computes C^T with A and B swapped (every path at
                 # N = 10; AVX-512 float at N = 65, 96 columns padded against 72 rows) and
                 # must still give the prepacked path's bits.
                 (300, 10, 40), (130, 65, 70), (400, 96, 400)]


def _prepacked(side, a, b, c0, ta, tb, alpha, beta, copies=2):
    cs = [c0.copy() for _ in range(copies)]
    out = _C.gemm_prepacked(side, a, b, cs, ta, tb, alpha, beta)
    assert out is cs
    return cs


@pytest.mark.skipif(_C.sanitize_build,
                    reason="the -O1 sanitizer build may contract a*b+c into FMAs differently "
                           "in different kernels (1-ulp differences); the -O3 build compares the bits")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mnk", PACKED_SHAPES)
def test_prepacked_gemm_is_bitwise_plain_gemm(simd_path, rng, mnk, dtype):
    for ta in (False, True):
        for tb in (False, True):
            a, b, ref = operands(rng, *mnk, ta, tb, dtype)
            c0 = rng.standard_normal(ref.shape).astype(dtype)
            for alpha, beta in [(1.0, 0.0), (0.5, 0.75), (-2.0, 1.0)]:
                plain = c0.copy()
                _C.gemm(a, b, plain, ta, tb, alpha, beta)
                np.testing.assert_allclose(plain, alpha * ref + beta * c0, **TOL[dtype])
                for side in ("a", "b"):
                    # Each reuse of the one packing gives the same bits as plain gemm.
                    for c in _prepacked(side, a, b, c0, ta, tb, alpha, beta):
                        np.testing.assert_array_equal(c, plain, err_msg=f"side={side} ta={ta} tb={tb}")


@pytest.mark.parametrize("side", ["a", "b"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prepacked_edge_cases(rng, side, dtype):
    # beta == 0 never reads C; alpha == 0 and K == 0 only scale C.
    a, b, ref = operands(rng, 20, 30, 10, True, False, dtype)
    c = _prepacked(side, a, b, np.full(ref.shape, np.nan, dtype=dtype), True, False, 1.0, 0.0, copies=1)[0]
    np.testing.assert_allclose(c, ref, **TOL[dtype])
    c0 = rng.standard_normal(ref.shape).astype(dtype)
    c = _prepacked(side, a, b, c0, True, False, 0.0, 2.0, copies=1)[0]
    np.testing.assert_array_equal(c, 2.0 * c0)
    c = _prepacked(side, np.zeros((3, 0), dtype), np.zeros((0, 4), dtype), np.ones((3, 4), dtype), False, False,
                   1.0, 3.0, copies=1)[0]
    np.testing.assert_array_equal(c, 3.0)


@pytest.mark.parametrize("side", ["a", "b"])
@pytest.mark.parametrize("m,n,k,ta,tb", [(150, 197, 400, False, True), (300, 260, 270, True, False),
                                          (32, 1024, 256, False, True)])
def test_prepacked_one_and_two_threads_agree(rng, side, m, n, k, ta, tb):
    a, b, _ = operands(rng, m, n, k, ta, tb, np.float32)
    c0 = np.zeros((m, n), np.float32)
    before = pycore.get_num_threads()
    try:
        pycore.set_num_threads(1)
        one = _prepacked(side, a, b, c0, ta, tb, 1.0, 0.0, copies=1)[0]
        plain = c0.copy()
        _C.gemm(a, b, plain, ta, tb, 1.0, 0.0)
        pycore.set_num_threads(2)
        two = _prepacked(side, a, b, c0, ta, tb, 1.0, 0.0, copies=1)[0]
    finally:
        pycore.set_num_threads(before)
    np.testing.assert_array_equal(one, plain)
    np.testing.assert_array_equal(one, two)


def test_prepacked_refuses_a_bad_side():
    with pytest.raises(ValueError, match="side"):
        _C.gemm_prepacked("c", np.ones((2, 2)), np.ones((2, 2)), [np.zeros((2, 2))])
