"""The examples end to end in their fast modes, and the character-model pieces they use
(CharModel and train_char_model against PyTorch, sampling)."""
import re
import subprocess
import sys

import numpy as np
import pytest

import pycore
from conftest import child_process_env
from pycore.datasets import CharVocab
from pycore.train import CharModel, sample, train_char_model



def test_lenet_quick_then_embed(tmp_path, capsys):
    """`python -m pycore.examples.lenet --quick --save` in a subprocess, then the saved model
    served by embed.DigitClassifier reproduces the accuracy the training run printed."""
    pytest.importorskip("sklearn")
    from pycore.examples import embed, lenet
    path = tmp_path / "lenet.safetensors"
    env = child_process_env()
    result = subprocess.run([sys.executable, "-m", "pycore.examples.lenet", "--quick", "--digits", "--threads", "1",
                             "--save", str(path)], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LeNet-5 on digits: 256 training and 256 test images" in result.stdout
    printed = float(re.search(r"test accuracy ([0-9.]+)%", result.stdout).group(1))
    # the same test split, rebuilt here, through the served model
    (_, _), (x_test, y_test), info = lenet.digits_dataset(seed=0)
    images, labels = pycore.datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(images))
    test = order[int(len(images) * 0.8):][:256]
    clf = embed.DigitClassifier(path)
    predicted = clf.predict(images[test])
    assert predicted.shape == (256,) and predicted.dtype == np.int64
    assert 100 * np.mean(predicted == labels[test]) == pytest.approx(printed, abs=0.006)
    probs = clf.predict_proba(images[test][:5])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(probs.argmax(1), predicted[:5])
    # the network input built for serving is the one used in training
    np.testing.assert_array_equal(lenet.to_network_input(images[test][:3], info["mean"], info["std"]), x_test[:3])
    embed.main(["--model", str(path), "--batches", "2"])
    assert "ms per predict call" in capsys.readouterr().out


def test_embed_refuses_other_checkpoints(tmp_path):
    from pycore.examples import embed
    path = tmp_path / "other.safetensors"
    pycore.save(path, pycore.nn.Linear(2, 2), arch="mlp")
    with pytest.raises(ValueError, match="lenet5"):
        embed.DigitClassifier(path)


def test_char_lstm_quick(capsys):
    from pycore.examples import char_lstm
    history = char_lstm.main(["--quick"])
    out = capsys.readouterr().out
    assert "the Python standard library's sources" in out and "--- sample" in out
    assert history["val_loss"][-1] < history["val_loss"][0]
    assert len(history["loss"]) == 10


def test_stdlib_corpus_is_real_python():
    from pycore.examples.char_lstm import stdlib_corpus
    text = stdlib_corpus(20_000)
    assert len(text) == 20_000 and "def " in text and "import " in text


def make_torch_char_model(torch, model):
    """PyTorch's Embedding -> LSTM(batch_first) -> Linear holding a copy of `model`'s weights."""
    tnn = torch.nn

    class TorchChar(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(model.embed.num_embeddings, model.embed.embedding_dim)
            self.lstm = tnn.LSTM(model.lstm.input_size, model.lstm.hidden_size, model.lstm.num_layers,
                                 batch_first=True)
            self.head = tnn.Linear(model.lstm.hidden_size, model.vocab_size)

        def forward(self, ids, state=None):
            y, state = self.lstm(self.embed(ids), state)
            return self.head(y), state

    tm = TorchChar()
    tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return tm


def test_char_model_matches_pytorch_forward_and_gradients():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = CharModel(11, hidden_size=8, num_layers=2, embedding_dim=5)
    tm = make_torch_char_model(torch, model)
    ids = np.random.default_rng(0).integers(0, 11, size=(3, 7))
    targets = np.random.default_rng(1).integers(0, 11, size=(3, 7))
    logits, (h, c) = model(ids)
    loss_fn = pycore.nn.CrossEntropyLoss()
    loss = loss_fn(logits, targets)
    model.zero_grad()
    model.backward(loss_fn.backward())
    t_logits, (th, tc) = tm(torch.from_numpy(ids))
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, 11), torch.from_numpy(targets).reshape(-1))
    t_loss.backward()
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, th.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert loss == pytest.approx(t_loss.item(), rel=1e-5)
    t_grads = dict(tm.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, t_grads[name].grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_truncated_bptt_training_matches_pytorch():
    """Four steps of train_char_model == the same loop in PyTorch: state carried and detached
    between chunks, global-norm clipping, Adam."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model = CharModel(9, hidden_size=12, num_layers=2, embedding_dim=6)
    tm = make_torch_char_model(torch, model)
    ids = np.random.default_rng(2).integers(0, 9, size=400)
    history = train_char_model(model, ids, steps=4, batch_size=4, seq_len=10, lr=1e-2, clip_grad_norm=0.5,
                               verbose=False)
    opt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    streams = torch.from_numpy(ids.reshape(4, 100))  # 4 streams of 100 ids: inputs and next-id targets
    state, losses = None, []
    for k in range(4):
        x, y = streams[:, 10 * k:10 * k + 10], streams[:, 10 * k + 1:10 * k + 11]
        logits, state = tm(x, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 9), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.5)
        opt.step()
        state = tuple(s.detach() for s in state)
        losses.append(loss.item())
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-4)
    t_params = dict(tm.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.data, t_params[name].detach().numpy(), rtol=1e-3, atol=1e-5, err_msg=name)


def test_sample_is_reproducible_and_greedy_at_low_temperature():
    vocab = CharVocab("abcdefgh")
    model = CharModel(len(vocab), hidden_size=8, num_layers=1, embedding_dim=4)
    a = sample(model, vocab, "abc", 20, temperature=1.0, seed=3)
    assert a == sample(model, vocab, "abc", 20, temperature=1.0, seed=3)
    assert a.startswith("abc") and len(a) == 23
    # temperature -> 0 is greedy decoding: the argmax, fed back one character at a time
    ids = list(vocab.encode("abc"))
    with pycore.no_grad():
        for _ in range(10):
            logits, _ = model(np.array([ids]))
            ids.append(int(logits[0, -1].argmax()))
    assert sample(model, vocab, "abc", 10, temperature=1e-4, seed=0) == vocab.decode(ids)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, vocab, "abc", 5, temperature=0)
    with pytest.raises(ValueError, match="'z'"):
        sample(model, vocab, "zzz", 5)
