"""Issue 6: concurrency, fork, leaks and debug mode across the library."""
import multiprocessing as mp
import threading

import numpy as np
import pytest

import pycore
import pycore.functional as F
import pycore.nn as nn


def small_model(dtype=np.float32):
    pycore.manual_seed(3)
    return nn.Sequential(nn.Linear(32, 64, dtype=dtype), nn.Linear(64, 10, dtype=dtype))


def test_eight_threads_get_exactly_their_serial_results():
    model = small_model().eval()
    inputs = [np.random.default_rng(i).standard_normal((16 + i, 32)).astype(np.float32) for i in range(8)]
    with pycore.no_grad():
        alone = [model(x) for x in inputs]
    results = [None] * 8
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(30):
            with pycore.no_grad():
                y = model(inputs[i])
            if results[i] is None:
                results[i] = y
            elif not np.array_equal(results[i], y):
                results[i] = "changed between calls"

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert isinstance(results[i], np.ndarray), results[i]
        np.testing.assert_array_equal(results[i], alone[i])


def test_kernels_release_the_gil():
    """While one thread is inside a long GEMM, another thread keeps running Python."""
    a = np.random.default_rng(0).standard_normal((900, 900))
    before = pycore.get_num_threads()
    pycore.set_num_threads(1)
    inside, done = threading.Event(), threading.Event()

    def worker():
        inside.set()
        for _ in range(6):
            F.matmul(a, a)
        done.set()

    count = 0
    try:
        t = threading.Thread(target=worker)
        t.start()
        inside.wait()
        while not done.is_set():
            count += 1
        t.join()
    finally:
        pycore.set_num_threads(before)
    # Six 900^3 float64 products take a good fraction of a second; with the GIL held
    # this loop could run only in the few switch intervals between calls.
    assert count > 10_000, count


def test_set_num_threads_from_another_thread_does_not_corrupt_a_kernel():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((257, 300)), rng.standard_normal((300, 190))
    expected = F.matmul(a, b)
    before = pycore.get_num_threads()
    stop = threading.Event()

    def flip():
        n = 1
        while not stop.is_set():
            pycore.set_num_threads(n)
            n = 3 - n

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        for _ in range(200):
            np.testing.assert_array_equal(F.matmul(a, b), expected)
    finally:
        stop.set()
        flipper.join()
        pycore.set_num_threads(before)


def _forward_in_child(x):
    model = small_model()
    with pycore.no_grad():
        return float(model(x).sum())


def test_training_then_forking_a_pool_does_not_hang():
    pycore.set_num_threads(2)
    model = small_model()
    x = np.random.default_rng(2).standard_normal((256, 32)).astype(np.float32)
    for _ in range(3):
        y = model(x)
        model.backward(np.ones_like(y))
    with pycore.no_grad():
        expected = float(small_model()(x[:8]).sum())
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        result = pool.map_async(_forward_in_child, [x[:8]] * 4)
        values = result.get(timeout=60)
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.skipif(pycore._C.sanitize_build, reason="AddressSanitizer holds freed memory in quarantine")
def test_ten_thousand_forward_backward_calls_do_not_leak():
    model = small_model()
    x = np.random.default_rng(3).standard_normal((16, 32)).astype(np.float32)
    g = np.ones((16, 10), np.float32)

    def step():
        model(x)
        model.backward(g)

    for _ in range(1000):
        step()
    start = _rss_bytes()
    for _ in range(10_000):
        step()
    grown = _rss_bytes() - start
    assert grown < 4 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB"


def test_debug_mode_names_the_first_layer_with_a_nan():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3), nn.Linear(3, 2))
    x = np.ones((2, 4), np.float32)
    model[1].weight.data[0, 0] = np.nan
    model(x)  # off by default: no check
    pycore.set_debug(True)
    try:
        with pytest.raises(FloatingPointError, match=r"'1' \(Linear\).*forward output"):
            model(x)
        model[1].weight.data[0, 0] = 1.0
        y = model(x)
        g = np.ones_like(y)
        g[0, 0] = np.inf
        with pytest.raises(FloatingPointError, match=r"'2' \(Linear\).*backward"):
            model.backward(g)
    finally:
        pycore.set_debug(False)


def test_unpickled_and_byte_swapped_arrays_are_accepted():
    import pickle

    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)
    expected = a.astype(np.float64) @ b
    # An unpickled array carries its own dtype object, not numpy's singleton.
    a2, b2 = pickle.loads(pickle.dumps(a)), pickle.loads(pickle.dumps(b))
    np.testing.assert_allclose(F.matmul(a2, b2), expected, rtol=1e-5)
    big_endian = a.astype(">f4")
    np.testing.assert_allclose(F.matmul(big_endian, b), expected, rtol=1e-5)
    model = small_model()
    x = rng.standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_array_equal(model(x.astype(">f4")), model(pickle.loads(pickle.dumps(x))))
