"""pycore.examples.resnet end to end on a tiny digits configuration (seconds): the
forward-only ResNet learns, and with --torch the PyTorch copy starts from the same weights."""
import numpy as np
import pytest

import pycore
from pycore.examples import resnet

pytest.importorskip("sklearn")  # the digits ship with scikit-learn

TINY = ["--digits", "--epochs", "4", "--limit", "640", "--batch-size", "64", "--widths", "8", "8", "16",
        "--lr", "0.05", "--threads", "1"]


def test_resnet_learns_digits(capsys):
    accuracy = resnet.main(TINY)
    out = capsys.readouterr().out
    assert "ResNet 8-8-16" in out and "backward from the tape" in out
    assert accuracy > 0.5  # ten classes: chance is 0.1


def test_torch_copy_starts_from_the_same_model():
    torch = pytest.importorskip("torch")
    pycore.manual_seed(0)
    model = resnet.ResNet((4, 4, 8))
    torch_model = resnet.torch_resnet((4, 4, 8))
    resnet.copy_weights_to_torch(model, torch_model)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model.eval(), torch_model.eval()
    with pycore.no_grad(), torch.no_grad():
        np.testing.assert_allclose(model(x), torch_model(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_random_shift_moves_each_image_within_the_limit():
    images = np.zeros((64, 1, 6, 6), np.float32)
    images[:, 0, 2, 3] = 1.0
    shifted = resnet.random_shift(2)(images, np.random.default_rng(0))
    assert np.all(shifted.reshape(64, -1).sum(axis=1) == 1.0)  # moved, not lost (at most 2 from 2 of 6)
    positions = [tuple(np.argwhere(s[0])[0]) for s in shifted]
    assert all(abs(r - 2) <= 2 and abs(c - 3) <= 2 for r, c in positions)
    assert len(set(positions)) > 5
