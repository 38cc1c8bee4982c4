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


def test_kernels_release_the_gil():
    """While one thread is inside a long GEMM, another thread keeps running Python."""
    # The sanitizer build's GEMM is several times slower: a smaller product lasts as long.
    n = 450 if pycore._C.sanitize_build else 900
    a = np.random.default_rng(0).standard_normal((n, n))
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
    # Six n^3 float64 products take a good fraction of a second; with the GIL held
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
        for _ in range(30 if pycore._C.sanitize_build else 200):
            np.testing.assert_array_equal(F.matmul(a, b), expected)
    finally:
        stop.set()
        flipper.join()
        pycore.set_num_threads(before)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


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


# -- the CNN and LSTM of issue 6: threads, leaks and fork -------------------------------------

def small_cnn(dtype=np.float32):
    pycore.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, dtype=dtype), nn.BatchNorm2d(6, dtype=dtype),
                         nn.ReLU(dtype=dtype), nn.MaxPool2d(2, dtype=dtype), nn.Flatten(dtype=dtype),
                         nn.Linear(6 * 4 * 4, 10, dtype=dtype))


class LastStep(nn.Module):
    """An LSTM followed by a linear head on its last step, as one model."""

    def __init__(self):
        super().__init__()
        pycore.manual_seed(6)
        self.lstm = nn.LSTM(5, 12, num_layers=2)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y[-1])

    def backward(self, grad):
        return self.lstm.backward(self.head.backward(grad))


def _train_a_little(model, x, steps=3):
    model.train()
    for _ in range(steps):
        y = model(x)
        model.backward(np.cos(np.arange(y.size, dtype=np.float32)).reshape(y.shape))
        for p in model.parameters():
            p.data -= 0.01 * p.grad
            p.grad.fill(0)
    return model.eval()


def _cnn_inputs(count):
    return [np.random.default_rng(10 + i).standard_normal((2 + i % 3, 3, 8, 8)).astype(np.float32)
            for i in range(count)]


def _lstm_inputs(count):
    return [np.random.default_rng(20 + i).standard_normal((4 + i % 3, 2 + i % 2, 5)).astype(np.float32)
            for i in range(count)]


@pytest.mark.parametrize("grad_mode", ["no_grad", "grad enabled"])
@pytest.mark.parametrize("which", ["cnn", "lstm"])
def test_eight_threads_share_one_cnn_or_lstm_in_eval_mode(which, grad_mode):
    if which == "cnn":
        model, inputs = small_cnn(), _cnn_inputs(8)
        _train_a_little(model, inputs[0])  # non-trivial running statistics for eval mode
    else:
        model, inputs = LastStep(), _lstm_inputs(8)
        _train_a_little(model, inputs[0])
    with pycore.no_grad():
        alone = [model(x).copy() for x in inputs]
    results, barrier = [None] * 8, threading.Barrier(8)

    def work(i):
        barrier.wait()
        for _ in range(15):
            if grad_mode == "no_grad":
                with pycore.no_grad():
                    y = model(inputs[i])
            else:
                y = model(inputs[i])
            if results[i] is None:
                results[i] = y.copy()
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


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.skipif(pycore._C.sanitize_build, reason="AddressSanitizer holds freed memory in quarantine")
@pytest.mark.parametrize("which", ["cnn", "lstm"])
def test_ten_thousand_forward_backward_calls_of_a_cnn_or_lstm_do_not_leak(which):
    if which == "cnn":
        pycore.manual_seed(7)
        model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                              nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(3 * 2 * 2, 4))
        x = np.random.default_rng(8).standard_normal((2, 2, 4, 4)).astype(np.float32)
    else:
        pycore.manual_seed(7)
        model = nn.LSTM(3, 4)
        x = np.random.default_rng(8).standard_normal((2, 2, 3)).astype(np.float32)
    loss = nn.CrossEntropyLoss()
    target = np.array([1, 0])

    def step():
        y = model(x)
        y = y[0][-1] if isinstance(y, tuple) else y
        loss(y, target)
        g = loss.backward()
        model.backward(g)

    for _ in range(500):
        step()
    start = _rss_bytes()
    for _ in range(10_000):
        step()
    grown = _rss_bytes() - start
    assert grown < 4 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB"


def _cnn_forward_in_child(args):
    state, x = args
    model = small_cnn()
    model.load_state_dict(state)
    with pycore.no_grad():
        return model.eval()(x)


def _lstm_forward_in_child(args):
    state, x = args
    model = LastStep()
    model.load_state_dict(state)
    with pycore.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("which", ["cnn", "lstm"])
def test_forking_a_pool_after_training_a_cnn_or_lstm_does_not_hang(which):
    pycore.set_num_threads(2)  # an OpenMP team exists in the parent before the fork
    if which == "cnn":
        model, inputs, child = small_cnn(), _cnn_inputs(4), _cnn_forward_in_child
    else:
        model, inputs, child = LastStep(), _lstm_inputs(4), _lstm_forward_in_child
    _train_a_little(model, inputs[0], steps=5)
    with pycore.no_grad():
        expected = [model(x) for x in inputs]
    state = {k: v.copy() for k, v in model.state_dict().items()}
    with mp.get_context("fork").Pool(2) as pool:
        got = pool.map_async(child, [(state, x) for x in inputs]).get(timeout=60)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)
