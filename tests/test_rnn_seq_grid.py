"""The full grid the sequence issue asks for, beyond test_rnn_seq's chosen cases: every kind
bidirectional x {1, 2 layers} x batch_first both ways with all-different lengths (one of them
1), against PyTorch's packed sequences; and every cell's manual loop against its full layer."""
import numpy as np
import pytest

from pycore import nn

pytest.importorskip("torch")
from test_rnn_seq import KINDS, cell_loop_backward, check_against_torch

GRID = [(kind, layers, batch_first) for kind in KINDS for layers in (1, 2) for batch_first in (False, True)]


@pytest.mark.parametrize("kind,layers,batch_first", GRID)
def test_bidirectional_with_lengths_matches_torch(rng, kind, layers, batch_first):
    lengths = np.array([3, 1, 5, 2])
    gx = check_against_torch(rng, kind, layers, True, batch_first, lengths=lengths)
    for n, length in enumerate(lengths):
        assert not (gx[n, length:] if batch_first else gx[length:, n]).any()


CELL_LAYERS = {"LSTM": (nn.LSTMCell, nn.LSTM, {}), "GRU": (nn.GRUCell, nn.GRU, {}),
               "RNN_TANH": (nn.RNNCell, nn.RNN, {"nonlinearity": "tanh"}),
               "RNN_RELU": (nn.RNNCell, nn.RNN, {"nonlinearity": "relu"})}


@pytest.mark.parametrize("kind", CELL_LAYERS)
def test_cell_loop_equals_the_layer_with_initial_state(rng, kind):
    """T cell calls from (h0, c0) give the layer's outputs, final state and every gradient."""
    cell_cls, layer_cls, extra = CELL_LAYERS[kind]
    lstm = kind == "LSTM"
    layer = layer_cls(3, 4, dtype=np.float64, **extra)
    cell = cell_cls(3, 4, dtype=np.float64, **extra)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})  # weight_ih_l0 -> weight_ih
    x, grad_y = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    h0, c0 = rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 2, 4))
    y, state = layer(x, (h0, c0) if lstm else h0)
    gx = layer.backward(grad_y)

    cell_state, outs = ((h0[0], c0[0]) if lstm else h0[0]), []
    for t in range(5):
        cell_state = cell(x[t], cell_state)
        outs.append(cell_state[0] if lstm else cell_state)
    tol = {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(np.stack(outs), y, **tol)
    np.testing.assert_allclose(cell_state[0] if lstm else cell_state, (state[0] if lstm else state)[0], **tol)
    gx_cell, grad_initial = cell_loop_backward(cell, grad_y, lstm)
    np.testing.assert_allclose(gx_cell, gx, **tol)
    expected_initial = layer.grad_initial_state
    if lstm:
        np.testing.assert_allclose(grad_initial[0], expected_initial[0][0], **tol)
        np.testing.assert_allclose(grad_initial[1], expected_initial[1][0], **tol)
    else:
        np.testing.assert_allclose(grad_initial, expected_initial[0], **tol)
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(layer, f"{name}_l0").grad, err_msg=name, **tol)
