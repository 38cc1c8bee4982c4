"""pycore.sequences: padding, per-batch padding, bucketing, resume, masked losses."""
import numpy as np
import pytest

import pycore.nn as nn
from pycore.data import DataLoader
from pycore.sequences import (SequenceLoader, length_mask, mask_targets, pad_collate, pad_sequences,
                              sequence_array)


def random_sequences(rng, n, features=(3,), lengths=None, dtype=np.float32):
    if lengths is None:
        lengths = rng.integers(1, 20, size=n)
    return [rng.standard_normal((int(t), *features)).astype(dtype) for t in lengths]


def naive_pad(sequences, value):
    longest = max(len(s) for s in sequences)
    rows = []
    for s in sequences:
        row = [list(np.ravel(step)) for step in s]
        while len(row) < longest:
            row.append([value] * int(np.prod(s.shape[1:])))
        rows.append(row)
    return np.array(rows).reshape(len(sequences), longest, *sequences[0].shape[1:])


@pytest.mark.parametrize("features", [(), (3,), (2, 4)])
def test_pad_sequences_matches_naive_loop(features):
    rng = np.random.default_rng(0)
    seqs = random_sequences(rng, 7, features)
    batch, lengths = pad_sequences(seqs, padding_value=-7.5)
    assert batch.dtype == np.float32 and lengths.dtype == np.int64
    np.testing.assert_array_equal(lengths, [len(s) for s in seqs])
    np.testing.assert_array_equal(batch, naive_pad(seqs, -7.5).astype(np.float32))
    assert pad_sequences(seqs, dtype=np.float64)[0].dtype == np.float64


def test_pad_sequences_bad_input():
    good = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"\[1\].*at least one step"):
        pad_sequences([good, np.zeros((0, 2), np.float32)])
    with pytest.raises(ValueError, match=r"\[1\]: trailing shape"):
        pad_sequences([good, np.zeros((3, 5), np.float32)])
    with pytest.raises(TypeError, match=r"\[1\]: dtype float64"):
        pad_sequences([good, np.zeros((3, 2))])
    with pytest.raises(TypeError, match="list of numpy arrays"):
        pad_sequences(good)
    with pytest.raises(TypeError, match=r"\[0\]: expected a numeric numpy array"):
        pad_sequences([[1, 2]])


def padded_dataset(n=203, seed=0):
    rng = np.random.default_rng(seed)
    # skewed: most sequences short, a few long (a log-normal, as sentence lengths)
    lengths = np.clip(rng.lognormal(2.0, 0.8, size=n).astype(int), 1, 200)
    return random_sequences(rng, n, (2,), lengths), rng.integers(0, 5, size=n)


def seen_ids(loader, seqs):
    """The dataset indices of every sequence yielded in one epoch, checking each batch."""
    lookup = {s.tobytes(): i for i, s in enumerate(seqs)}
    assert len(lookup) == len(seqs)  # random floats: every sequence is unique
    seen = []
    for xb, lengths, yb in loader:
        assert xb.shape[1] == lengths.max()  # padded to this batch's own longest
        for row, t in zip(xb, lengths):
            assert np.all(row[t:] == 0)
            seen.append(lookup[np.ascontiguousarray(row[:t]).tobytes()])
    return seen


@pytest.mark.parametrize("bucket", [False, True])
def test_every_sequence_once_per_epoch_and_targets_follow(bucket):
    seqs, labels = padded_dataset()
    loader = SequenceLoader(seqs, labels, batch_size=16, shuffle=True, seed=3, bucket=bucket, bucket_batches=4)
    assert len(loader) == 13
    for _ in range(2):
        seen = seen_ids(loader, seqs)
        assert sorted(seen) == list(range(len(seqs)))
    # the targets travel with their sequences
    for xb, lengths, yb in loader:
        for row, t, y in zip(xb, lengths, yb):
            i = next(j for j, s in enumerate(seqs) if len(s) == t and np.array_equal(s, row[:t]))
            assert y == labels[i]
    dropped = SequenceLoader(seqs, labels, batch_size=16, shuffle=True, seed=3, bucket=bucket, drop_last=True)
    assert len(dropped) == 12 and all(len(b[1]) == 16 for b in dropped)


def epoch_batches(loader):
    return [(xb.copy(), lengths.copy(), yb.copy()) for xb, lengths, yb in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("bucket", [False, True])
def test_seeded_determinism_and_resume_mid_epoch(bucket):
    seqs, labels = padded_dataset(90)
    make = lambda: SequenceLoader(seqs, labels, batch_size=8, shuffle=True, seed=11, bucket=bucket, bucket_batches=3)
    reference = make()
    first, second = epoch_batches(reference), epoch_batches(reference)
    assert_same_batches(first, epoch_batches(make()))  # same seed, same batches
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))  # a new order each epoch

    interrupted = make()
    epoch_batches(interrupted)
    iterator = iter(interrupted)
    for _ in range(5):
        next(iterator)
    state = interrupted.state_dict()
    assert state["batches_done"] == 5 and state["epoch"] == 1
    resumed = make()
    resumed.load_state_dict(state)
    assert_same_batches(list(resumed), second[5:])
    third = epoch_batches(reference)
    assert_same_batches(epoch_batches(resumed), third)


def total_padding(loader):
    return sum(int(xb.shape[1] * len(lengths) - lengths.sum()) for xb, lengths, _ in loader)


def test_bucketing_reduces_padding():
    seqs, labels = padded_dataset(400)
    random_batches = SequenceLoader(seqs, labels, batch_size=16, shuffle=True, seed=5)
    bucketed = SequenceLoader(seqs, labels, batch_size=16, shuffle=True, seed=5, bucket=True, bucket_batches=10)
    random_padding, bucketed_padding = total_padding(random_batches), total_padding(bucketed)
    # padding to the global maximum is the upper bound of both
    lengths = np.array([len(s) for s in seqs])
    assert random_padding < int(lengths.max() * len(seqs) - lengths.sum())
    assert bucketed_padding < random_padding


def test_per_step_targets_padded_with_ignore_index():
    rng = np.random.default_rng(2)
    seqs = random_sequences(rng, 20, (4,))
    step_targets = [rng.integers(0, 6, size=len(s)) for s in seqs]
    loader = SequenceLoader(seqs, step_targets, batch_size=6, shuffle=True, seed=0, bucket=True)
    for xb, lengths, tb in loader:
        assert tb.shape == xb.shape[:2]
        np.testing.assert_array_equal(tb == -100, ~length_mask(lengths, xb.shape[1]))
    with pytest.raises(ValueError, match="sequence's length"):
        SequenceLoader(seqs, step_targets[:-1] + [np.zeros(len(seqs[-1]) + 1, np.int64)])


def test_pad_collate_with_dataloader():
    seqs, labels = padded_dataset(50)
    loader = DataLoader(sequence_array(seqs), labels, batch_size=8, shuffle=True, seed=1, collate_fn=pad_collate())
    seen = seen_ids(loader, seqs)
    assert sorted(seen) == list(range(len(seqs)))


def test_length_mask_and_masked_cross_entropy_equals_real_steps_only():
    rng = np.random.default_rng(4)
    n, steps, classes = 5, 9, 7
    lengths = np.array([9, 1, 4, 6, 2])
    logits = rng.standard_normal((n, steps, classes)).astype(np.float64)
    targets = rng.integers(0, classes, size=(n, steps))
    mask = length_mask(lengths, steps)
    np.testing.assert_array_equal(mask, [[t < length for t in range(steps)] for length in lengths])

    masked = mask_targets(targets, lengths)
    assert np.all(masked[~mask] == -100) and np.array_equal(masked[mask], targets[mask])
    loss = nn.CrossEntropyLoss()(logits, masked)
    # numpy reference: the mean of -log softmax over the real steps only, written per step
    terms = []
    for i in range(n):
        for t in range(lengths[i]):
            z = logits[i, t] - logits[i, t].max()
            terms.append(np.log(np.exp(z).sum()) - z[targets[i, t]])
    np.testing.assert_allclose(float(loss), np.mean(terms), rtol=1e-10)
    # and it differs from the unmasked loss (the padded steps would count)
    assert abs(float(nn.CrossEntropyLoss()(logits, targets)) - np.mean(terms)) > 1e-6


def test_mask_and_loader_bad_input():
    with pytest.raises(ValueError, match="more than the 3 steps"):
        length_mask([2, 4], 3)
    with pytest.raises(ValueError, match=">= 0"):
        length_mask([2, -1], 3)
    with pytest.raises(TypeError, match="1-D integer"):
        length_mask([1.5], 3)
    with pytest.raises(TypeError, match="integer numpy array"):
        mask_targets(np.zeros((2, 3)), [1, 2])
    with pytest.raises(ValueError, match="2 lengths for 3 target rows"):
        mask_targets(np.zeros((3, 4), np.int64), [1, 2])
    seqs = [np.zeros((2, 1), np.float32)] * 3
    with pytest.raises(ValueError, match="batch_size"):
        SequenceLoader(seqs, batch_size=0)
    with pytest.raises(ValueError, match="bucket_batches"):
        SequenceLoader(seqs, bucket=True, bucket_batches=0)
    with pytest.raises(ValueError, match="share their first axis"):
        SequenceLoader(seqs, np.zeros(2))
