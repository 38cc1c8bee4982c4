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
