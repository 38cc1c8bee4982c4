"""The sequence examples on tiny configurations: row-by-row digits, the Shakespeare speech
classifier and the vanishing-gradient study learn or behave as they claim, and their
hand-written composite backwards match PyTorch."""
import numpy as np
import pytest
from conftest import data_path

import pycore
from pycore import nn
from pycore.examples import row_mnist, text_classifier, vanishing_gradients
from pycore.examples.row_mnist import LastStateModel

QUICK_DIGITS = ["--digits", "--hidden", "32", "--batch-size", "64", "--threads", "1"]


def test_row_digits_learn_far_above_chance():
    pytest.importorskip("sklearn")
    results = row_mnist.main(QUICK_DIGITS + ["--epochs", "6"])
    losses = [loss for _, loss, _ in results["pycore"]]
    assert losses[-1] < 0.6 * losses[0]
    assert results["pycore"][-1][2] > 0.6  # 10 classes: chance is 0.1


def test_row_digits_pytorch_twin_follows_the_same_run():
    """Same initial weights, batches, Adam, schedule and clipping: the same losses and accuracies."""
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    results = row_mnist.main(QUICK_DIGITS + ["--epochs", "2", "--torch"])
    for (_, ours_loss, ours_acc), (_, torch_loss, torch_acc) in zip(results["pycore"], results["torch"]):
        assert ours_loss == pytest.approx(torch_loss, rel=1e-4)
        assert ours_acc == pytest.approx(torch_acc, abs=2 / 360)  # at most 2 of 360 test images flip


def test_last_state_model_gradients_match_finite_differences(rng):
    """The head on h_n[-1] and backward's (N, hidden) grad_y path: input and every parameter."""
    model = LastStateModel(nn.GRU(3, 4, num_layers=2, batch_first=True, dtype=np.float64), 2)
    assert pycore.testing.gradcheck(model, rng.standard_normal((3, 5, 3)))
    with pytest.raises(ValueError, match="bidirectional"):
        LastStateModel(nn.LSTM(3, 4, bidirectional=True), 2)


SPEECHES = """First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

MENENIUS:
Why, masters, my good friends,
mine honest neighbours.

ROMEO:
O, she doth teach the torches to burn bright!
"""


def test_speeches_drop_the_speaker_and_are_labelled_by_section():
    speeches, labels = text_classifier.labelled_speeches(SPEECHES, sections=2)
    assert speeches[0] == ["before", "we", "proceed", "any", "further", ",", "hear", "me", "speak", "."]
    assert speeches[2][:3] == ["why", ",", "masters"] and "menenius" not in speeches[2]
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    vocabulary = text_classifier.build_vocabulary(speeches, min_count=2)
    assert set(vocabulary) == {",", ".", "speak"} and sorted(vocabulary.values()) == [2, 3, 4]
    ids = text_classifier.encode(speeches, vocabulary, max_words=3)
    assert [len(i) for i in ids] == [3, 3, 3, 3] and ids[1][0] == vocabulary["speak"] and ids[0][0] == 1


def test_speech_classifier_matches_torch_packed_bilstm(rng):
    """Both directions' final states through h_n, with lengths: logits and every gradient."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence
    model = text_classifier.SpeechClassifier(20, 3, embedding=4, hidden=5, dtype=np.float64)
    lengths = np.array([4, 1, 6, 3])
    words = rng.integers(2, 20, (4, 6))
    for n, length in enumerate(lengths):
        words[n, length:] = text_classifier.PAD
    grad_logits = rng.standard_normal((4, 3))
    model.train()
    logits = model(words, lengths)
    model.zero_grad()
    model.backward(grad_logits)

    ref = torch.nn.Module()
    ref.embedding = torch.nn.Embedding(20, 4, padding_idx=text_classifier.PAD)
    ref.lstm = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
    ref.head = torch.nn.Linear(10, 3)
    ref.double().load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    packed = pack_padded_sequence(ref.embedding(torch.from_numpy(words)), torch.from_numpy(lengths),
                                  batch_first=True, enforce_sorted=False)
    _, (h_n, _) = ref.lstm(packed)
    torch_logits = ref.head(torch.cat([h_n[-2], h_n[-1]], dim=1))
    (torch_logits * torch.from_numpy(grad_logits)).sum().backward()
    np.testing.assert_allclose(logits, torch_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    ours = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(ours[name].grad, p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_text_classifier_beats_the_majority_baseline():
    """Two short epochs on every speech (cut to 40 words) already double the baseline (8 sections)."""
    path = data_path("tinyshakespeare", "input.txt")
    results = text_classifier.main(["--data", str(path), "--epochs", "2", "--embedding", "32", "--hidden", "32",
                                    "--max-words", "40", "--threads", "1", "--no-timing"])
    assert results["accuracy"] > 1.5 * results["baseline"]
    assert results["seconds"] is None


def test_text_classifier_times_the_three_batchings(capsys):
    path = data_path("tinyshakespeare", "input.txt")
    results = text_classifier.main(["--data", str(path), "--limit", "300", "--epochs", "1", "--embedding", "8",
                                    "--hidden", "8", "--max-words", "30", "--threads", "1"])
    assert set(results["seconds"]) == {"padded to the global maximum", "per-batch padding + lengths=",
                                       "bucketed + lengths="}
    assert all(seconds > 0 for seconds in results["seconds"].values())
    assert "bucketed + lengths=" in capsys.readouterr().out


def test_tanh_gradients_vanish_faster_than_the_lstms():
    """At initialisation ||dE/dx_0|| / ||dE/dx_T-1|| over T = 100 steps is orders of magnitude
    smaller for a tanh RNN than for an LSTM of the same size (the same seed and batch)."""
    probe = vanishing_gradients.adding_batch(np.random.default_rng(1), 100, 64)
    reach = {}
    for name in ("tanh RNN", "LSTM"):
        pycore.manual_seed(0)
        norms = vanishing_gradients.input_gradient_norms(LastStateModel(vanishing_gradients.MODELS[name](32), 1),
                                                         *probe)
        assert norms.shape == (100,) and np.all(np.isfinite(norms)) and norms[-1] > 0
        reach[name] = norms[0] / norms[-1]
    assert reach["tanh RNN"] < 1e-15
    assert reach["tanh RNN"] < 1e-3 * reach["LSTM"]


def test_adding_batch_targets_are_the_marked_sums():
    x, target = vanishing_gradients.adding_batch(np.random.default_rng(0), 10, 500)
    assert x.shape == (10, 500, 2) and target.shape == (500, 1)
    markers = x[:, :, 1]
    np.testing.assert_array_equal(markers.sum(axis=0), 2)
    assert np.all(markers[:5].sum(axis=0) == 1)  # one marker in each half
    np.testing.assert_allclose(target[:, 0], (x[:, :, 0] * markers).sum(axis=0), rtol=1e-6)
    assert target.var() == pytest.approx(vanishing_gradients.BASELINE_MSE, rel=0.15)


def test_vanishing_gradients_writes_its_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "vg.png"
    results = vanishing_gradients.main(["--lengths", "4", "12", "--iterations", "150", "--hidden", "8",
                                        "--threads", "1", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert set(results) == {(name, steps) for name in vanishing_gradients.MODELS for steps in (4, 12)}
    lstm = results["LSTM", 4]
    assert lstm["mse"] < 0.5 * vanishing_gradients.BASELINE_MSE  # a short sequence is learnt
    for name in vanishing_gradients.MODELS:
        assert results[name, 12]["grad_before"].shape == results[name, 12]["grad_after"].shape == (12,)
