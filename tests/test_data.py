"""DataLoader: batching, shuffling determinism, drop_last, and resuming from a state."""
import json

import numpy as np
import pytest

from pycore.data import DataLoader


def test_batches_cover_the_data_in_order_without_shuffle():
    x = np.arange(10 * 3).reshape(10, 3)
    y = np.arange(10)
    loader = DataLoader(x, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_single_array_yields_arrays_not_tuples():
    batches = list(DataLoader(np.arange(5), batch_size=2))
    assert all(isinstance(b, np.ndarray) for b in batches)
    np.testing.assert_array_equal(batches[-1], [4])


def test_drop_last():
    loader = DataLoader(np.arange(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(b) for b in loader] == [4, 4]
    assert len(DataLoader(np.arange(8), batch_size=4, drop_last=True)) == 2


def test_shuffle_is_a_permutation_deterministic_for_a_seed_and_new_each_epoch():
    y = np.arange(100)
    a = DataLoader(y, batch_size=7, shuffle=True, seed=3)
    b = DataLoader(y, batch_size=7, shuffle=True, seed=3)
    epoch1_a, epoch1_b = np.concatenate(list(a)), np.concatenate(list(b))
    np.testing.assert_array_equal(epoch1_a, epoch1_b)
    np.testing.assert_array_equal(np.sort(epoch1_a), y)
    assert not np.array_equal(epoch1_a, y)
    epoch2_a = np.concatenate(list(a))
    assert not np.array_equal(epoch1_a, epoch2_a)
    # the same order as numpy's generator with that seed draws, epoch after epoch
    reference = np.random.default_rng(3)
    np.testing.assert_array_equal(epoch1_a, reference.permutation(100))
    np.testing.assert_array_equal(epoch2_a, reference.permutation(100))


def test_shuffled_pairs_stay_aligned():
    x = np.arange(50) * 10
    for xb, yb in DataLoader(x, np.arange(50), batch_size=8, shuffle=True, seed=1):
        np.testing.assert_array_equal(xb, yb * 10)


def test_seed_none_follows_pycore_manual_seed():
    import pycore
    pycore.manual_seed(5)
    a = np.concatenate(list(DataLoader(np.arange(30), batch_size=4, shuffle=True)))
    pycore.manual_seed(5)
    b = np.concatenate(list(DataLoader(np.arange(30), batch_size=4, shuffle=True)))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("stop_after", [0, 3, 5])
def test_state_round_trip_continues_identically(stop_after):
    """Stop after some batches of epoch 2, save the state as JSON, restore into a fresh loader:
    the rest of the run matches the uninterrupted one batch for batch."""
    y = np.arange(37)
    reference = DataLoader(y, batch_size=5, shuffle=True, seed=11)
    expected = [list(reference) for _ in range(3)]

    loader = DataLoader(y, batch_size=5, shuffle=True, seed=11)
    list(loader)
    it = iter(loader)
    seen = [next(it) for _ in range(stop_after)]
    state = json.loads(json.dumps(loader.state_dict()))  # plain values only

    fresh = DataLoader(y, batch_size=5, shuffle=True, seed=999)
    fresh.load_state_dict(state)
    rest_of_epoch2 = list(fresh)
    epoch3 = list(fresh)
    for got, want in zip(seen + rest_of_epoch2, expected[1]):
        np.testing.assert_array_equal(got, want)
    assert len(seen) + len(rest_of_epoch2) == len(expected[1])
    for got, want in zip(epoch3, expected[2]):
        np.testing.assert_array_equal(got, want)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"lengths \[3, 4\]"):
        DataLoader(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least one array"):
        DataLoader()
    with pytest.raises(TypeError, match="numpy array"):
        DataLoader([1, 2, 3])
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(np.zeros(3), batch_size=0)
    with pytest.raises(ValueError, match="batches_done"):
        DataLoader(np.zeros(3)).load_state_dict({"epoch": 0, "batches_done": 9, "generator": {}})


@pytest.mark.parametrize("shuffle", [False, True])
def test_batches_are_copies_not_views(shuffle):
    """Normalising a batch in place must not change the dataset (PyTorch's loader copies)."""
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    original = x.copy()
    for xb, yb in DataLoader(x, y, batch_size=4, shuffle=shuffle, seed=0):
        assert not np.shares_memory(xb, x) and not np.shares_memory(yb, y)
        xb -= xb.mean()
        yb[...] = -1
    np.testing.assert_array_equal(x, original)
    np.testing.assert_array_equal(y, np.arange(10))
    (single,) = [next(iter(DataLoader(x, batch_size=3)))]
    assert not np.shares_memory(single, x)


def shift(xb, rng):
    """A random roll of each row by -1, 0 or 1 (augmentation)."""
    return np.stack([np.roll(row, rng.integers(-1, 2)) for row in xb])


def test_transform_and_collate_hooks_are_resumable():
    """transform gets the inputs and a generator seeded from (seed, epoch, batch); collate_fn
    shapes what is yielded. A loader restored mid-epoch gives the same batches, augmentation
    included, as the uninterrupted one."""
    x = np.arange(60, dtype=np.float32).reshape(12, 5)
    y = np.arange(12)
    side = -np.arange(12)

    def make():
        return DataLoader(x, side, y, batch_size=5, shuffle=True, seed=4, transform=shift,
                          collate_fn=lambda a, b, c: ((a, b), c))

    loader = make()
    first, second = list(loader), list(loader)
    assert all(isinstance(b[0], tuple) and len(b[0]) == 2 for b in first)
    (a, b), c = first[0]
    np.testing.assert_array_equal(np.sort(a, axis=1), np.sort(x[c], axis=1))  # rolled rows of the right samples
    np.testing.assert_array_equal(b, side[c])
    assert not all(np.array_equal(a, x[c]) for (a, _), c in first + second)  # some rows did move
    resumed = make()
    iterator = iter(resumed)
    next(iterator)
    state = json.loads(json.dumps(resumed.state_dict()))
    again = make()
    again.load_state_dict(state)
    for got, want in zip(list(again) + list(again), first[1:] + second):
        for u, v in zip((got[0][0], got[0][1], got[1]), (want[0][0], want[0][1], want[1])):
            np.testing.assert_array_equal(u, v)
    with pytest.raises(TypeError, match="transform"):
        DataLoader(x, transform=3)
    with pytest.raises(ValueError, match="bit_generator"):
        again.load_state_dict({**state, "generator": {**state["generator"], "bit_generator": "seed"}})
