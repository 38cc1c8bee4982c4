"""The memory pool (csrc/memory.h, pycore/memory.py): arrays made by layers come from it,
are reused step after step, stay intact while a user holds them, and nothing else is
served by it."""
import multiprocessing as mp
import resource
import threading

import numpy as np
import pytest

import pycore
from pycore import memory, nn, optim
from pycore.examples.lenet import build_lenet

try:
    from numpy._core.multiarray import get_handler_name as _get_handler_name
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import get_handler_name as _get_handler_name


def get_handler_name(a):
    """The allocator of the array that owns a's memory (a view reports None)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return _get_handler_name(a)


def _lenet_step_parts(seed=0, batch=64):
    pycore.manual_seed(seed)
    model = build_lenet()
    model.requires_input_grad = False
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
        return loss

    return model, x, step


def test_layer_outputs_come_from_the_pool_and_user_arrays_do_not():
    model, x, _ = _lenet_step_parts(batch=2)
    out = model(x)
    assert get_handler_name(out) == memory.handler_name
    assert get_handler_name(np.empty(1000)) != memory.handler_name
    assert get_handler_name(out + 1) != memory.handler_name  # the user's own arithmetic
    assert get_handler_name(np.zeros((64, 6, 28, 28), np.float32)) != memory.handler_name


def test_steady_training_steps_fault_in_almost_no_pages():
    """Issue 9: ~630-775 minor faults per LeNet-5 step before the pool; <= 20 measured
    after. The bound is generous so that only a regression (fresh memory every step) trips it."""
    _, _, step = _lenet_step_parts()
    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    steps = 10
    for _ in range(steps):
        step()
    per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps
    assert per_step <= 100, f"{per_step} minor page faults per steady LeNet-5 training step"


def test_a_held_output_stays_intact_while_later_calls_reuse_memory():
    model, x, _ = _lenet_step_parts(batch=4)
    held = model(x)
    expected = held.copy()
    hits = memory.stats()["hits"]
    for scale in (2.0, -3.0, 0.5):
        model(x * scale)
    np.testing.assert_array_equal(held, expected)
    assert memory.stats()["hits"] > hits  # the later calls did reuse freed blocks


def test_zeros_from_a_reused_block_are_zero():
    shape = (64, 6, 28, 28)
    token = memory.enter()
    try:
        garbage = np.empty(shape, np.float32)
        garbage.fill(np.nan)
        del garbage  # its block goes back to the pool ...
        hits = memory.stats()["hits"]
        zeros = np.zeros(shape, np.float32)  # ... and numpy's calloc gets it again
        assert memory.stats()["hits"] == hits + 1
    finally:
        memory.leave(token)
    assert get_handler_name(zeros) == memory.handler_name
    assert not zeros.any()


def test_resize_keeps_the_values_and_alignment():
    token = memory.enter()
    try:
        a = np.arange(10, dtype=np.float64)
        a.resize(100_000, refcheck=False)  # numpy's realloc through the pool
    finally:
        memory.leave(token)
    np.testing.assert_array_equal(a[:10], np.arange(10))
    assert not a[10:].any()
    assert a.ctypes.data % 64 == 0


def test_cache_limit_returns_freed_blocks_to_the_system():
    before = memory.cache_limit()
    try:
        memory.set_cache_limit(0)
        assert memory.stats()["cached_bytes"] == 0
        _, _, step = _lenet_step_parts(batch=2)
        step()
        assert memory.stats()["cached_bytes"] == 0
        with pytest.raises(ValueError, match="nbytes"):
            memory.set_cache_limit(-1)
    finally:
        memory.set_cache_limit(before)


def test_kernel_scratch_is_aligned_and_round_trips():
    total, misalignment = pycore._C._memory_scratch_selftest(1000)
    assert total == sum(range(1000))
    assert misalignment == 0


def test_eight_threads_running_one_model_get_bit_identical_outputs():
    model, x, _ = _lenet_step_parts(batch=3)
    model.eval()
    inputs = [x * (i + 1) for i in range(8)]
    with pycore.no_grad():
        expected = [model(xi) for xi in inputs]
    results, errors = {}, []

    def worker(i):
        try:
            with pycore.no_grad():
                for _ in range(20):
                    out = model(inputs[i])
                    if not np.array_equal(out, expected[i]):
                        results[i] = out
                        return
            results[i] = None
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {i: None for i in range(8)}


def _child_step(queue):
    _, _, step = _lenet_step_parts(batch=4)
    queue.put(float(step()))


def test_a_child_forked_while_another_thread_allocates_can_train():
    """pthread_atfork holds the pool's lock across fork(), so the child never inherits it
    locked by a thread that does not exist there."""
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    _, _, step = _lenet_step_parts(batch=4)
    expected = float(step())  # same seed and data as the child's first step
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            token = memory.enter()
            try:
                np.ones(100_000, np.float32)
            finally:
                memory.leave(token)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        ctx = mp.get_context("fork")
        for _ in range(3):
            queue = ctx.Queue()
            proc = ctx.Process(target=_child_step, args=(queue,))
            proc.start()
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                pytest.fail("a child forked during allocation hung")
            assert proc.exitcode == 0
            assert queue.get(timeout=5) == expected
    finally:
        stop.set()
        thread.join()
