"""Truncated BPTT: the chunking helpers and a chunked training loop against PyTorch with .detach()."""
import numpy as np
import pytest

import pycore
import pycore.nn as nn
from pycore.optim import clip_grad_norm_
from pycore.train import batchify, detach_state, tbptt_batches

torch = pytest.importorskip("torch")


# PyTorch's word_language_model (examples/word_language_model/main.py), the reference layout.
def torch_batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def torch_get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len]


@pytest.mark.parametrize("length,batch_size,seq_len", [(100, 4, 7), (61, 3, 5), (20, 1, 19), (9, 2, 10)])
def test_chunks_match_word_language_model(rng, length, batch_size, seq_len):
    stream = rng.integers(0, 50, size=length)
    source = torch_batchify(torch.tensor(stream), batch_size)
    expected = [torch_get_batch(source, i, seq_len) for i in range(0, source.size(0) - 1, seq_len)]
    chunks = list(tbptt_batches(stream, seq_len, batch_size=batch_size))
    assert len(chunks) == len(expected)
    for (inputs, targets), (ti, tt) in zip(chunks, expected):
        np.testing.assert_array_equal(inputs, ti.numpy())
        np.testing.assert_array_equal(targets, tt.numpy())
        assert inputs.flags.c_contiguous and inputs.dtype == stream.dtype
    first = [c[0] for c in tbptt_batches(stream, seq_len, batch_size=batch_size, batch_first=True)]
    np.testing.assert_array_equal(first[0], chunks[0][0].T)
    # the streams already laid out (N, L) give the same chunks
    again = list(tbptt_batches(batchify(stream, batch_size), seq_len))
    for (a, b), (c, d) in zip(chunks, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_bad_arguments():
    stream = np.arange(30)
    with pytest.raises(ValueError, match="seq_len"):
        next(tbptt_batches(stream, 0))
    with pytest.raises(TypeError, match="seq_len"):
        next(tbptt_batches(stream, 2.5))
    with pytest.raises(ValueError, match="1-D"):
        next(tbptt_batches(stream.reshape(2, 3, 5), 3))
    with pytest.raises(ValueError, match="batch_size"):
        next(tbptt_batches(stream.reshape(3, 10), 3, batch_size=2))
    with pytest.raises(ValueError, match="cannot fill"):
        next(tbptt_batches(stream, 3, batch_size=31))
    with pytest.raises(ValueError, match="at least 2 steps"):
        next(tbptt_batches(stream.reshape(30, 1), 3))
    with pytest.raises(TypeError, match="state"):
        detach_state("h")


def test_detach_state_copies():
    h, c = np.ones((1, 2, 3)), np.zeros((1, 2, 3))
    carried = detach_state((h, c))
    assert isinstance(carried, tuple) and carried[0] is not h
    h[...] = 5
    assert (carried[0] == 1).all()
    assert detach_state(None) is None
    single = detach_state(c)
    assert single is not c and np.array_equal(single, c)


def cross_entropy(logits, targets):
    """Mean cross-entropy over all (T, N) positions and its gradient w.r.t. the logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(p, targets[..., None], axis=-1)[..., 0]
    count = targets.size
    grad = p.copy()
    np.put_along_axis(grad, targets[..., None], np.take_along_axis(grad, targets[..., None], -1) - 1, -1)
    return -np.log(picked).mean(), grad / count


@pytest.mark.parametrize("kind,layers", [("LSTM", 2), ("GRU", 1)])
def test_chunked_training_matches_torch_detach(rng, kind, layers):
    vocab, emb_dim, hidden, lr, max_norm = 7, 5, 6, 0.5, 0.5
    torch.manual_seed(0)
    t_emb = torch.nn.Embedding(vocab, emb_dim).double()
    t_rnn = getattr(torch.nn, kind)(emb_dim, hidden, num_layers=layers).double()
    t_head = torch.nn.Linear(hidden, vocab).double()
    t_params = list(t_emb.parameters()) + list(t_rnn.parameters()) + list(t_head.parameters())

    emb = nn.Embedding(vocab, emb_dim, dtype=np.float64)
    rnn = getattr(nn, kind)(emb_dim, hidden, num_layers=layers, dtype=np.float64)
    head = nn.Linear(hidden, vocab, dtype=np.float64)
    for ours, ref in ((emb, t_emb), (rnn, t_rnn), (head, t_head)):
        ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    params = emb.parameters() + rnn.parameters() + head.parameters()

    stream = rng.integers(0, vocab, size=3 * 17)
    seq_len, batch_size = 5, 3

    # PyTorch: the word_language_model loop, hidden.detach() between chunks.
    source = torch_batchify(torch.tensor(stream), batch_size)
    hidden_state, t_losses, t_grads = None, [], []
    for i in range(0, source.size(0) - 1, seq_len):
        data, targets = torch_get_batch(source, i, seq_len)
        out, hidden_state = t_rnn(t_emb(data), hidden_state)
        logits = t_head(out)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        for p in t_params:
            p.grad = None
        loss.backward()
        torch.nn.utils.clip_grad_norm_(t_params, max_norm)
        t_losses.append(loss.item())
        t_grads.append([p.grad.numpy().copy() for p in t_params])
        with torch.no_grad():
            for p in t_params:
                p -= lr * p.grad
        hidden_state = tuple(h.detach() for h in hidden_state) if kind == "LSTM" else hidden_state.detach()

    # pycore: the same loop with tbptt_batches and detach_state.
    state, losses = None, []
    for step, (inputs, targets) in enumerate(tbptt_batches(stream, seq_len, batch_size=batch_size)):
        y, state = rnn(emb(inputs), state)
        loss, grad_logits = cross_entropy(head(y), targets)
        for p in params:
            p.grad.fill(0)
        emb.backward(rnn.backward(head.backward(grad_logits)))
        clip_grad_norm_(params, max_norm)
        losses.append(loss)
        for p, expected in zip(params, t_grads[step]):
            np.testing.assert_allclose(p.grad, expected, rtol=1e-9, atol=1e-12, err_msg=f"step {step}")
        for p in params:
            p.data -= lr * p.grad
        state = detach_state(state)
    assert len(losses) == len(t_losses) == 4  # 16 input steps per stream: chunks of 5, 5, 5, 1
    np.testing.assert_allclose(losses, t_losses, rtol=1e-10)


def test_k1_k2_recipe_matches_torch(rng):
    """Forward k1 - k2 steps without gradients, then k2 with: torch's detach at that point."""
    k1, k2 = 6, 4
    torch.manual_seed(1)
    ref = torch.nn.LSTM(3, 4).double()
    ours = nn.LSTM(3, 4, dtype=np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = rng.standard_normal((k1, 2, 3))
    tx = torch.tensor(x)
    _, hid = ref(tx[:k1 - k2])
    out, _ = ref(tx[k1 - k2:], tuple(h.detach() for h in hid))
    out.sum().backward()
    with pycore.no_grad():
        _, state = ours(x[:k1 - k2])
    y, _ = ours(x[k1 - k2:], state)
    ours.backward(np.ones_like(y))
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(getattr(ours, name).grad, p.grad.numpy(), rtol=1e-10, atol=1e-12)
