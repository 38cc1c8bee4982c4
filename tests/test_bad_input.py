"""Issue 6, bad input: every public function and module of pycore.functional and pycore.nn
checks its arguments before any C++ runs and raises an exception naming the argument and
the expected/received value (TypeError for a type/dtype, ValueError for a shape/value,
RuntimeError for calls in the wrong order); odd memory layouts give identical results;
sizes that would overflow int64 are rejected before anything is copied or allocated.

A NEW OP REGISTERS HERE, in three registries (test_every_op_is_registered fails, naming
the registry and the op, when one is missing):
  ENTRY_POINTS          every public forward, F.<op> and nn.<Module>: a valid call and input
  MODULES               every nn module: a factory and an input shape (call order, grad
                        shape and odd memory layouts run on each)
  FUNCTIONAL_BACKWARDS  every F.<op>_backward: a ctx from a real F.<op>_forward
Optional, when the op has them: SECOND_ARGUMENT_DTYPES (a weight's dtype), WRONG_NDIM,
EMPTY_AXES, _functional_calls (odd layouts of each argument), HUGE_SIZES (int64 overflow).
"""
import re

import numpy as np
import pytest

import pycore
import pycore.functional as F
import pycore.nn as nn
from pycore import _C, _pool2d

RNG = np.random.default_rng(6)


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------------------
# Every entry point, with a valid call: name -> (callable(x), a valid x).
# Functional entry points take their parameters from here; modules are built fresh.

W_CONV = rand(4, 3, 3, 3)
W_LIN = rand(5, 6)
W_IH, W_HH = rand(4 * 7, 6), rand(4 * 7, 7)
BN_MEAN, BN_VAR = np.zeros(3, np.float32), np.ones(3, np.float32)


def _module_call(make):
    def call(x):
        pycore.manual_seed(0)
        return make()(x)
    return call


ENTRY_POINTS = {
    "F.conv2d": (lambda x: F.conv2d(x, W_CONV), rand(2, 3, 5, 5)),
    "F.max_pool2d": (lambda x: F.max_pool2d(x, 2), rand(2, 3, 4, 4)),
    "F.avg_pool2d": (lambda x: F.avg_pool2d(x, 2), rand(2, 3, 4, 4)),
    "F.linear": (lambda x: F.linear(x, W_LIN), rand(3, 6)),
    "F.matmul": (lambda x: F.matmul(x, W_LIN.T), rand(3, 6)),
    "F.relu": (F.relu, rand(3, 4)),
    "F.leaky_relu": (F.leaky_relu, rand(3, 4)),
    "F.sigmoid": (F.sigmoid, rand(3, 4)),
    "F.tanh": (F.tanh, rand(3, 4)),
    "F.softmax": (F.softmax, rand(3, 4)),
    "F.log_softmax": (F.log_softmax, rand(3, 4)),
    "F.dropout": (lambda x: F.dropout(x, 0.3), rand(3, 4)),
    "F.batch_norm": (lambda x: F.batch_norm(x, BN_MEAN.copy(), BN_VAR.copy()), rand(2, 3, 4, 4)),
    "F.rnn_layer": (lambda x: F.rnn_layer("LSTM", x, W_IH, W_HH)[0], rand(4, 2, 6)),
    "F.rnn_layer_varlen": (lambda x: F.rnn_layer_varlen("GRU", x, np.array([4, 1]), rand(21, 6), rand(21, 7))[0],
                           rand(4, 2, 6)),
    "F.adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, 2), rand(2, 3, 5, 5)),
    "F.adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 2), rand(2, 3, 5, 5)),
    "F.layer_norm": (lambda x: F.layer_norm(x, (4,)), rand(3, 4)),
    "F.gelu": (F.gelu, rand(3, 4)),
    "F.conv1d": (lambda x: F.conv1d(x, W_CONV[:, :, 0]), rand(2, 3, 7)),
    "F.silu": (F.silu, rand(3, 4)),
    "F.cross_entropy": (lambda x: F.cross_entropy(x, np.array([0, 2, 1])), rand(3, 4)),
    "F.mse_loss": (lambda x: F.mse_loss(x, np.zeros((3, 4), x.dtype if x.dtype.kind == "f" else np.float32)),
                   rand(3, 4)),
    "F.binary_cross_entropy_with_logits": (
        lambda x: F.binary_cross_entropy_with_logits(x, np.zeros((3, 4), np.float32)), rand(3, 4)),
    "F.prelu": (lambda x: F.prelu(x, np.full(3, 0.25, x.dtype if x.dtype.kind == "f" else np.float32)),
                rand(2, 3, 4)),
    "F.relu_max_pool2d": (lambda x: F.relu_max_pool2d(x, 2), rand(2, 3, 4, 4)),
    "F.embedding": (lambda x: F.embedding(np.array([[0, 2], [1, 1]]), x), rand(3, 4)),
    "nn.Conv2d": (_module_call(lambda: nn.Conv2d(3, 4, 3, padding=1)), rand(2, 3, 5, 5)),
    "nn.MaxPool2d": (_module_call(lambda: nn.MaxPool2d(2)), rand(2, 3, 4, 4)),
    "nn.AvgPool2d": (_module_call(lambda: nn.AvgPool2d(2)), rand(2, 3, 4, 4)),
    "nn.Linear": (_module_call(lambda: nn.Linear(6, 5)), rand(3, 6)),
    "nn.ReLU": (_module_call(nn.ReLU), rand(3, 4)),
    "nn.LeakyReLU": (_module_call(nn.LeakyReLU), rand(3, 4)),
    "nn.Sigmoid": (_module_call(nn.Sigmoid), rand(3, 4)),
    "nn.Tanh": (_module_call(nn.Tanh), rand(3, 4)),
    "nn.Softmax": (_module_call(lambda: nn.Softmax(dim=-1)), rand(3, 4)),
    "nn.LogSoftmax": (_module_call(lambda: nn.LogSoftmax(dim=-1)), rand(3, 4)),
    "nn.Dropout": (_module_call(lambda: nn.Dropout(0.3)), rand(3, 4)),
    "nn.BatchNorm2d": (_module_call(lambda: nn.BatchNorm2d(3)), rand(2, 3, 4, 4)),
    "nn.Flatten": (_module_call(nn.Flatten), rand(2, 3, 4)),
    "nn.BatchNorm1d": (_module_call(lambda: nn.BatchNorm1d(3)), rand(2, 3, 4)),
    "nn.LayerNorm": (_module_call(lambda: nn.LayerNorm(4)), rand(3, 4)),
    "nn.GELU": (_module_call(nn.GELU), rand(3, 4)),
    "nn.Conv1d": (_module_call(lambda: nn.Conv1d(3, 4, 3)), rand(2, 3, 7)),
    "nn.SiLU": (_module_call(nn.SiLU), rand(3, 4)),
    "nn.PReLU": (_module_call(lambda: nn.PReLU(3)), rand(2, 3, 4)),
    "nn.ReLUMaxPool2d": (_module_call(lambda: nn.ReLUMaxPool2d(2)), rand(2, 3, 4, 4)),
    "nn.AdaptiveAvgPool2d": (_module_call(lambda: nn.AdaptiveAvgPool2d(2)), rand(2, 3, 5, 5)),
    "nn.AdaptiveMaxPool2d": (_module_call(lambda: nn.AdaptiveMaxPool2d(2)), rand(2, 3, 5, 5)),
    "nn.RNN": (_module_call(lambda: nn.RNN(6, 7)), rand(4, 2, 6)),
    "nn.LSTM": (_module_call(lambda: nn.LSTM(6, 7, num_layers=2)), rand(4, 2, 6)),
    "nn.GRU": (_module_call(lambda: nn.GRU(6, 7, batch_first=True)), rand(2, 4, 6)),
    "nn.CrossEntropyLoss": (lambda x: nn.CrossEntropyLoss()(x, np.array([0, 2, 1])), rand(3, 4)),
    "nn.MSELoss": (lambda x: nn.MSELoss()(x, np.zeros((3, 4), np.float32)), rand(3, 4)),
    "nn.BCEWithLogitsLoss": (lambda x: nn.BCEWithLogitsLoss()(x, np.zeros((3, 4), np.float32)), rand(3, 4)),
}

BAD_DTYPES = [np.int32, np.int64, np.bool_, np.float16, np.object_, np.complex64, np.complex128]


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_wrong_dtype_is_a_type_error_naming_the_dtype(name, dtype):
    call, x = ENTRY_POINTS[name]
    with pytest.raises(TypeError, match=rf"(input|a|weight): .*{np.dtype(dtype).name}"):  # F.embedding: weight
        call(x.astype(dtype))


@pytest.mark.parametrize("name", ["nn.Conv2d", "nn.Linear", "nn.BatchNorm2d", "nn.BatchNorm1d", "nn.LayerNorm", "nn.Conv1d",
                                  "nn.RNN", "nn.LSTM", "nn.GRU", "nn.PReLU"])
def test_a_float64_batch_for_a_float32_module_is_a_type_error(name):
    """A layer with weights demands its own dtype: no silent casts (weightless layers take either)."""
    call, x = ENTRY_POINTS[name]
    with pytest.raises(TypeError, match=r"input: dtype float64 does not match the expected dtype float32"):
        call(x.astype(np.float64))


@pytest.mark.parametrize("call, args, match", [
    (F.conv2d, (rand(2, 3, 5, 5), W_CONV.astype(np.float64)), r"weight: dtype float64 does not match the input's dtype float32"),
    (F.conv2d, (rand(2, 3, 5, 5), W_CONV, np.zeros(4, np.int32)), r"bias: .*int32"),
    (F.conv2d, (rand(2, 3, 5, 5), W_CONV.astype(np.float16)), r"weight: .*float16"),
    (F.linear, (rand(3, 6), W_LIN.astype(np.int64)), r"weight: .*int64"),
    (F.matmul, (rand(3, 6), W_LIN.T.astype(np.complex64)), r"b: .*complex64"),
    (F.batch_norm, (rand(2, 3, 4, 4), BN_MEAN.astype(np.float64), BN_VAR), r"running_mean: dtype float64 does not match"),
    (F.rnn_layer, ("LSTM", rand(4, 2, 6), W_IH.astype(np.float64), W_HH), r"w_ih: dtype float64 does not match"),
    (F.rnn_layer, ("LSTM", rand(4, 2, 6), W_IH, W_HH, None, None, np.zeros((2, 7), np.int32)), r"h0: .*int32"),
    (F.cross_entropy, (rand(3, 4), np.array([0.0, 1.0, 2.0])), r"target: expected an integer array .*float64"),
    (F.mse_loss, (rand(3, 4), np.zeros((3, 4))), r"target: dtype float64 does not match the expected dtype float32"),
])
def test_wrong_dtype_of_a_second_argument(call, args, match):
    with pytest.raises(TypeError, match=match):
        call(*args)


def test_embedding_indices_must_be_integers():
    emb = nn.Embedding(10, 3)
    for dtype in (np.float32, np.bool_, np.object_, np.complex64):
        with pytest.raises(TypeError, match=rf"Embedding: indices: expected an integer array, got dtype {np.dtype(dtype).name}"):
            emb(np.zeros((2, 3), dtype))
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 10\) \(num_embeddings\), got 10"):
        emb(np.array([[1, 10]]))
    with pytest.raises(ValueError, match=r"got -1"):
        emb(np.array([-1]))


# ---------------------------------------------------------------------------------------
# Shapes: wrong rank, empty axes, mismatched channels / features

@pytest.mark.parametrize("call, x, match", [
    (lambda x: F.conv2d(x, W_CONV), rand(3, 5, 5), r"input: expected a 4-D array \(N, C_in, H, W\), got shape \(3, 5, 5\)"),
    (lambda x: F.conv2d(rand(2, 3, 5, 5), x), rand(4, 3, 3), r"weight: expected a 4-D array .*got shape \(4, 3, 3\)"),
    (lambda x: F.max_pool2d(x, 2), rand(4, 4), r"input: expected a 3-D or 4-D array .*got shape \(4, 4\)"),
    (lambda x: F.avg_pool2d(x, 2), rand(1, 2, 3, 4, 4), r"input: expected a 3-D or 4-D array .*got shape \(1, 2, 3, 4, 4\)"),
    (lambda x: F.batch_norm(x, BN_MEAN, BN_VAR), rand(3), r"input: expected a 2-D or 3-D or 4-D or 5-D array .*got shape \(3,\)"),
    (lambda x: F.linear(x, W_LIN), np.float32(1.0), r"linear: input has 0 features \(shape \(\)\)"),
    (lambda x: F.matmul(x, W_LIN.T), rand(2, 3, 6), r"a: expected a 2-D array, got shape \(2, 3, 6\)"),
    (lambda x: F.rnn_layer("GRU", x, rand(21, 6), rand(21, 7)), rand(4, 6), r"input: expected a 3-D array \(T, N, input_size\), got shape \(4, 6\)"),
    (lambda x: nn.Conv2d(3, 4, 3)(x), rand(3, 5, 5), r"Conv2d: input: expected a 4-D array .*got shape \(3, 5, 5\)"),
    (lambda x: nn.MaxPool2d(2)(x), rand(8), r"MaxPool2d: input: expected a 3-D or 4-D array .*got shape \(8,\)"),
    (lambda x: nn.AvgPool2d(2)(x), rand(2, 8), r"AvgPool2d: input: expected a 3-D or 4-D array .*got shape \(2, 8\)"),
    (lambda x: nn.BatchNorm2d(3)(x), rand(2, 3, 4), r"BatchNorm2d: input: expected a 4-D array .*got shape \(2, 3, 4\)"),
    (lambda x: nn.LSTM(6, 7)(x), rand(6), r"LSTM: input: expected a 2-D or 3-D array .*got shape \(6,\)"),
    (lambda x: nn.RNN(6, 7)(x), rand(1, 4, 2, 6), r"RNN: input: expected a 2-D or 3-D array .*got shape \(1, 4, 2, 6\)"),
    (lambda x: nn.Linear(6, 5)(x), np.float32(2.0), r"Linear: expected input with 6 features on the last axis, got shape \(\)"),
    (lambda x: nn.CrossEntropyLoss()(x, np.int64(0)), np.float32(1.0), r"input: expected logits of shape \(\*, C\).*got shape \(\)"),
])
def test_wrong_ndim_is_a_value_error_naming_the_shape(call, x, match):
    with pytest.raises(ValueError, match=match):
        call(x)


@pytest.mark.parametrize("call, x, match", [
    (lambda x: F.conv2d(x, rand(4, 3, 1, 1), padding=1), rand(2, 3, 0, 5), r"input: expected non-empty channel and spatial axes \(only the batch axis may be 0\), got shape \(2, 3, 0, 5\)"),
    (lambda x: F.conv2d(x, rand(4, 3, 1, 1)), rand(2, 3, 5, 0), r"input: .*got shape \(2, 3, 5, 0\)"),
    (lambda x: F.conv2d(x, rand(4, 0, 1, 1), groups=1), rand(2, 0, 5, 5), r"input: .*got shape \(2, 0, 5, 5\)"),
    (lambda x: nn.Conv2d(3, 4, 1)(x), rand(1, 3, 0, 0), r"input: expected non-empty .*got shape \(1, 3, 0, 0\)"),
    (lambda x: F.max_pool2d(x, 1), rand(2, 3, 0, 4), r"max_pool2d: expected an input with non-empty .*got shape \(2, 3, 0, 4\)"),
    (lambda x: F.avg_pool2d(x, 1), rand(2, 0, 4, 4), r"avg_pool2d: expected an input with non-empty .*got shape \(2, 0, 4, 4\)"),
    (lambda x: nn.MaxPool2d(1)(x), rand(3, 4, 0), r"got shape \(3, 4, 0\)"),
    (lambda x: nn.BatchNorm2d(3)(x), rand(0, 3, 4, 4), r"batch_norm: expected more than 1 value per channel .*got input of shape \(0, 3, 4, 4\)"),
    (lambda x: nn.BatchNorm2d(3)(x), rand(1, 3, 1, 1), r"more than 1 value per channel .*\(1, 3, 1, 1\)"),
    (lambda x: nn.LSTM(6, 7)(x), rand(0, 2, 6), r"LSTM: input: expected at least one step and one sequence, got shape \(0, 2, 6\)"),
    (lambda x: nn.GRU(6, 7)(x), rand(3, 0, 6), r"GRU: input: expected at least one step .*got shape \(3, 0, 6\)"),
    (lambda x: nn.RNN(6, 7, batch_first=True)(x), rand(0, 3, 6), r"RNN: input: .*got shape \(0, 3, 6\)"),
    (lambda x: nn.RNN(6, 7)(x), rand(0, 6), r"RNN: input: .*one step"),
    (lambda x: F.rnn_layer("RNN_TANH", x, rand(7, 6), rand(7, 7)), rand(0, 1, 6), r"input: expected at least one step .*\(0, 1, 6\)"),
    (lambda x: F.softmax(x, dim=0), rand(0, 3), None),  # an empty softmax is an empty result (as torch)
])
def test_empty_axes_where_meaningless_are_value_errors(call, x, match):
    if match is None:
        assert call(x).shape == x.shape
        return
    with pytest.raises(ValueError, match=match):
        call(x)


@pytest.mark.parametrize("call, x, shape", [
    (lambda x: F.conv2d(x, W_CONV, padding=1), rand(0, 3, 5, 5), (0, 4, 5, 5)),
    (lambda x: nn.MaxPool2d(2)(x), rand(0, 3, 4, 4), (0, 3, 2, 2)),
    (lambda x: nn.AvgPool2d(2)(x), rand(0, 3, 4, 4), (0, 3, 2, 2)),
    (lambda x: nn.Linear(6, 5)(x), rand(0, 6), (0, 5)),
    (lambda x: nn.ReLU()(x), rand(0, 6), (0, 6)),
])
def test_an_empty_batch_where_meaningful_gives_an_empty_result(call, x, shape):
    """As in PyTorch: an empty batch of images or rows is an empty batch of outputs."""
    assert call(x).shape == shape


@pytest.mark.parametrize("call, match", [
    (lambda: nn.Conv2d(3, 4, 3)(rand(2, 5, 6, 6)), r"Conv2d: expected input with 3 channels, shape \(N, 3, H, W\), got shape \(2, 5, 6, 6\)"),
    (lambda: F.conv2d(rand(2, 5, 6, 6), W_CONV), r"weight: expected weight.shape\[1\] \* groups == input channels.*\(3 \* 1 != 5\)"),
    (lambda: F.conv2d(rand(2, 6, 6, 6), rand(4, 3, 3, 3), groups=4), r"groups: must divide the input channels, got groups=4 for C_in=6"),
    (lambda: F.conv2d(rand(2, 6, 6, 6), rand(3, 3, 3, 3), groups=2), r"groups: must divide the output channels, got groups=2 for C_out=3"),
    (lambda: nn.Conv2d(6, 4, 3, groups=4), r"Conv2d: in_channels must be divisible by groups, got in_channels=6, groups=4"),
    (lambda: nn.Conv2d(6, 3, 3, groups=2), r"Conv2d: out_channels must be divisible by groups, got out_channels=3, groups=2"),
    (lambda: F.conv2d(rand(2, 3, 5, 5), W_CONV, bias=rand(3)), r"bias: expected shape \(4,\) \(one per output channel\), got \(3,\)"),
    (lambda: nn.BatchNorm2d(3)(rand(2, 4, 3, 3)), r"BatchNorm2d: expected 3 channels \(axis 1\), got shape \(2, 4, 3, 3\)"),
    (lambda: F.batch_norm(rand(2, 4, 3, 3), BN_MEAN, BN_VAR), r"running_mean: expected shape \(4,\) \(one value per channel\), got \(3,\)"),
    (lambda: nn.Linear(6, 5)(rand(3, 7)), r"Linear: expected input with 6 features on the last axis, got shape \(3, 7\)"),
    (lambda: F.linear(rand(3, 7), W_LIN), r"linear: input has 7 features \(shape \(3, 7\)\) but weight expects 6"),
    (lambda: F.matmul(rand(3, 7), rand(6, 2)), r"gemm: shapes \(3, 7\) and \(6, 2\) do not align"),
    (lambda: nn.LSTM(6, 7)(rand(4, 2, 5)), r"LSTM: input: expected 6 features on the last axis \(input_size\), got shape \(4, 2, 5\)"),
    (lambda: nn.GRU(6, 7)(rand(4, 5)), r"GRU: input: expected 6 features .*got shape \(4, 5\)"),
    (lambda: F.rnn_layer("LSTM", rand(4, 2, 5), W_IH, W_HH), r"w_ih: expected shape \(28, 5\), got \(28, 6\)"),
    (lambda: F.rnn_layer("GRU", rand(4, 2, 6), W_IH, W_HH), r"w_hh: expected shape \(3\*H, H\) for GRU, got \(28, 7\)"),
    (lambda: F.rnn_layer("LSTMX", rand(4, 2, 6), W_IH, W_HH), r"mode: expected one of .*got 'LSTMX'"),
    (lambda: nn.Flatten()(np.float32(3.0)), r"Flatten: input: expected an array with at least 1 dimension"),
])
def test_mismatched_sizes_are_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------
# Hyper-parameters: kernel, stride, dilation, padding, groups

@pytest.mark.parametrize("kwargs, match", [
    (dict(stride=0), r"stride: expected an int >= 1, got 0"),
    (dict(stride=(1, -2)), r"stride: expected an int >= 1, got -2"),
    (dict(dilation=0), r"dilation: expected an int >= 1, got 0"),
    (dict(dilation=(-1, 1)), r"dilation: expected an int >= 1, got -1"),
    (dict(padding=-1), r"padding: expected an int >= 0, got -1"),
    (dict(padding=(0, -3)), r"padding: expected an int >= 0, got -3"),
    (dict(padding=(1, 2, 3)), r"padding: expected an int or a pair of ints, got \(1, 2, 3\)"),
    (dict(padding="full"), r"padding: expected an int, a pair of ints, 'valid' or 'same', got 'full'"),
    (dict(padding="same", stride=2), r"padding: 'same' is not supported for strided convolutions \(stride=\(2, 2\)\)"),
    (dict(groups=0), r"groups: expected an int >= 1, got 0"),
    (dict(groups=-3), r"groups: expected an int >= 1, got -3"),
])
def test_conv_hyper_parameters_out_of_range_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(rand(1, 3, 5, 5), W_CONV, **kwargs)
    with pytest.raises(ValueError, match=match.replace("groups: expected", "groups: expected")):
        nn.Conv2d(3, 3, 3, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(stride=1.5), r"stride: expected an int, got float 1.5"),
    (dict(groups=True), r"groups: expected an int, got bool True"),
    (dict(padding=None), r"padding: expected an int, a pair of ints, 'valid' or 'same', got NoneType None"),
    (dict(dilation="2"), r"dilation: expected an int, got str '2'"),
])
def test_conv_hyper_parameters_of_the_wrong_type_are_type_errors(kwargs, match):
    with pytest.raises(TypeError, match=match):
        F.conv2d(rand(1, 3, 5, 5), W_CONV, **kwargs)


@pytest.mark.parametrize("kernel_size, match", [
    (0, r"kernel_size: expected an int >= 1, got 0"),
    ((3, -1), r"kernel_size: expected an int >= 1, got -1"),
])
def test_kernel_size_zero_or_negative(kernel_size, match):
    for make in (lambda: nn.Conv2d(3, 4, kernel_size), lambda: nn.MaxPool2d(kernel_size),
                 lambda: nn.AvgPool2d(kernel_size)):
        with pytest.raises(ValueError, match=match):
            make()
    for pool in (F.max_pool2d, F.avg_pool2d):
        with pytest.raises(ValueError, match=match):
            pool(rand(1, 2, 4, 4), kernel_size)
    with pytest.raises(ValueError, match=r"weight: expected shape \(C_out, C_in/groups, kH, kW\) with every size >= 1, got \(4, 3, 0, 3\)"):
        F.conv2d(rand(1, 3, 5, 5), rand(4, 3, 0, 3))


def test_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match=r"weight: the kernel \(5, 5\) with dilation \(1, 1\) is larger than "
                                         r"the padded input \(4, 6\)"):
        F.conv2d(rand(1, 3, 2, 4), rand(4, 3, 5, 5), padding=1)
    with pytest.raises(ValueError, match=r"the kernel \(3, 3\) with dilation \(2, 2\) is larger than the padded input \(4, 4\)"):
        nn.Conv2d(3, 4, 3, dilation=2)(rand(1, 3, 4, 4))
    for pool, op in ((F.max_pool2d, "max_pool2d"), (F.avg_pool2d, "avg_pool2d")):
        with pytest.raises(ValueError, match=rf"{op}: input of height x width 2x5 gives output size 0x3 with "
                                             r"kernel_size=\(3, 3\).*too small"):
            pool(rand(1, 2, 2, 5), 3, stride=1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=3, padding=2), r"padding should be at most half of kernel_size, got padding=\(2, 2\) and kernel_size=\(3, 3\)"),
    (dict(kernel_size=(2, 4), padding=(1, 3)), r"padding should be at most half of kernel_size, got padding=\(1, 3\)"),
    (dict(kernel_size=2, padding=-1), r"padding: expected an int >= 0, got -1"),
    (dict(kernel_size=2, stride=0), r"stride: expected an int >= 1, got 0"),
    (dict(kernel_size=2, stride=(-1, 1)), r"stride: expected an int >= 1, got -1"),
])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pooling_hyper_parameters(op, kwargs, match):
    pool = F.max_pool2d if op == "max" else F.avg_pool2d
    module = nn.MaxPool2d if op == "max" else nn.AvgPool2d
    with pytest.raises(ValueError, match=match):
        pool(rand(1, 2, 8, 8), **kwargs)
    with pytest.raises(ValueError, match=match):
        module(**kwargs)(rand(1, 2, 8, 8))


@pytest.mark.parametrize("make, state, match", [
    (lambda: nn.RNN(6, 7, num_layers=2), rand(1, 2, 7), r"RNN: h_0: expected shape \(2, 2, 7\) \(num_layers, batch, hidden_size\), got \(1, 2, 7\)"),
    (lambda: nn.GRU(6, 7), rand(1, 3, 7), r"GRU: h_0: expected shape \(1, 2, 7\) .*got \(1, 3, 7\)"),
    (lambda: nn.LSTM(6, 7), (rand(1, 2, 7), rand(1, 2, 8)), r"LSTM: c_0: expected shape \(1, 2, 7\) .*got \(1, 2, 8\)"),
    (lambda: nn.LSTM(6, 7), (rand(2, 7), rand(1, 2, 7)), r"LSTM: h_0: expected shape \(1, 2, 7\) .*got \(2, 7\)"),
])
def test_a_state_of_the_wrong_shape_is_a_value_error(make, state, match):
    with pytest.raises(ValueError, match=match):
        make()(rand(4, 2, 6), state)


@pytest.mark.parametrize("make, state, match", [
    (lambda: nn.LSTM(6, 7), rand(1, 2, 7), r"LSTM: state: expected a tuple \(h_0, c_0\) of arrays \(1, 2, 7\), got ndarray"),
    (lambda: nn.GRU(6, 7), (rand(1, 2, 7), rand(1, 2, 7)), r"GRU: state: expected an array h_0 of shape \(1, 2, 7\), got a tuple"),
    (lambda: nn.RNN(6, 7), rand(1, 2, 7).astype(np.float64), r"RNN: h_0: dtype float64 does not match the expected dtype float32"),
])
def test_a_state_of_the_wrong_type_is_a_type_error(make, state, match):
    with pytest.raises(TypeError, match=match):
        make()(rand(4, 2, 6), state)


def test_rnn_layer_state_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 7\), got \(3, 7\)"):
        F.rnn_layer("LSTM", rand(4, 2, 6), W_IH, W_HH, h0=rand(3, 7))
    with pytest.raises(ValueError, match=r"c0: expected shape \(2, 7\), got \(2, 6\)"):
        F.rnn_layer("LSTM", rand(4, 2, 6), W_IH, W_HH, c0=rand(2, 6))


# ---------------------------------------------------------------------------------------
# Losses

@pytest.mark.parametrize("target, match", [
    (np.array([0, 4, 1]), r"target: class index 4 at position \(1,\) is outside \[0, 4\) and is not ignore_index \(-100\)"),
    (np.array([0, -1, 1]), r"target: class index -1 at position \(1,\) is outside \[0, 4\)"),
    (np.array([0, 1]), r"target: expected shape \(3,\) to match input of shape \(3, 4\) \(classes on the last axis\), got \(2,\)"),
    (np.array([0, 1, 2, 3]), r"target: expected shape \(3,\) .*got \(4,\)"),
    (np.array([[0, 1, 2]]), r"target: expected shape \(3,\) .*got \(1, 3\)"),
])
def test_cross_entropy_targets(target, match):
    logits = rand(3, 4)
    with pytest.raises(ValueError, match=match):
        F.cross_entropy(logits, target)
    with pytest.raises(ValueError, match=match):
        nn.CrossEntropyLoss()(logits, target)


@pytest.mark.parametrize("call, match", [
    (lambda: nn.MSELoss()(rand(3, 4), rand(4, 3)), r"target: expected the input's shape \(3, 4\), got \(4, 3\)"),
    (lambda: nn.BCEWithLogitsLoss()(rand(3, 4), rand(2, 4)), r"target: expected the input's shape \(3, 4\), got \(2, 4\)"),
    (lambda: nn.CrossEntropyLoss(weight=np.ones(3, np.float32))(rand(3, 4), np.array([0, 1, 2])), r"weight: expected shape \(4,\)"),
    (lambda: nn.CrossEntropyLoss(reduction="avg"), r"reduction: expected one of 'mean', 'sum', 'none', got 'avg'"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), r"label_smoothing: expected a value in \[0, 1\], got 1.5"),
])
def test_loss_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------
# Calls in the wrong order, and gradients of the wrong shape, for every module

MODULES = {
    "Conv2d": (lambda: nn.Conv2d(3, 4, 3), (2, 3, 5, 5)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (2, 3, 4, 4)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2, padding=1), (2, 3, 4, 4)),
    "Linear": (lambda: nn.Linear(6, 5), (3, 6)),
    "ReLU": (nn.ReLU, (3, 4)),
    "LeakyReLU": (nn.LeakyReLU, (3, 4)),
    "Sigmoid": (nn.Sigmoid, (3, 4)),
    "Tanh": (nn.Tanh, (3, 4)),
    "Softmax": (lambda: nn.Softmax(dim=1), (3, 4)),
    "LogSoftmax": (lambda: nn.LogSoftmax(dim=0), (3, 4)),
    "Dropout": (lambda: nn.Dropout(0.5), (3, 4)),
    "BatchNorm2d": (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4)),
    "Flatten": (nn.Flatten, (2, 3, 4)),
    "BatchNorm1d": (lambda: nn.BatchNorm1d(3), (2, 3, 4)),
    "LayerNorm": (lambda: nn.LayerNorm(4), (3, 4)),
    "GELU": (nn.GELU, (3, 4)),
    "SiLU": (nn.SiLU, (3, 4)),
    "PReLU": (lambda: nn.PReLU(3, init=-0.1), (2, 3, 4)),
    "ReLUMaxPool2d": (lambda: nn.ReLUMaxPool2d(2), (2, 3, 4, 4)),
    "AdaptiveAvgPool2d": (lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 5)),
    "AdaptiveMaxPool2d": (lambda: nn.AdaptiveMaxPool2d(2), (2, 3, 5, 5)),
    "Identity": (nn.Identity, (3, 4)),
    "Conv1d": (lambda: nn.Conv1d(3, 4, 3, padding=1), (2, 3, 7)),
    "RNN": (lambda: nn.RNN(6, 7, nonlinearity="relu"), (4, 2, 6)),
    "LSTM": (lambda: nn.LSTM(6, 7, num_layers=2), (4, 2, 6)),
    "GRU": (lambda: nn.GRU(6, 7, batch_first=True), (2, 4, 6)),
    "Sequential": (lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 4)), (2, 3, 5, 5)),
}


def _output(y):
    return y[0] if isinstance(y, tuple) else y


@pytest.mark.parametrize("name", sorted(MODULES))
def test_backward_before_forward_and_twice_after_one_forward(name):
    make, shape = MODULES[name]
    pycore.manual_seed(0)
    m = make()
    with pytest.raises(RuntimeError, match=r"backward: no forward to differentiate"):
        m.backward(np.ones((1,), np.float32))
    y = _output(m(rand(*shape)))
    m.backward(np.ones_like(y))
    with pytest.raises(RuntimeError, match=r"backward: no forward to differentiate"):
        m.backward(np.ones_like(y))
    with pycore.no_grad():  # a forward under no_grad keeps nothing
        y = _output(m(rand(*shape)))
    with pytest.raises(RuntimeError, match=r"no forward to differentiate"):
        m.backward(np.ones_like(y))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_backward_with_a_grad_of_the_wrong_shape(name):
    make, shape = MODULES[name]
    pycore.manual_seed(0)
    m = make()
    y = _output(m(rand(*shape)))
    bad = np.ones(y.shape[:-1] + (y.shape[-1] + 1,), np.float32)
    with pytest.raises(ValueError, match=r"grad.*" + re.escape(str(bad.shape))):
        m.backward(bad)
    y = _output(m(rand(*shape)))
    with pytest.raises(TypeError, match=r"grad.*int64"):
        m.backward(np.ones(y.shape, np.int64))


def _make_functional_backwards():
    """name -> (backward(grad_output), the forward output's shape), each with the ctx of a
    real forward. Every F.<op>_backward belongs here (test_every_op_is_registered)."""
    x4, x3, x2, xs = rand(2, 3, 5, 5), rand(2, 3, 7), rand(3, 6), rand(4, 2, 6)
    target = np.array([0, 5, 1])

    def pair(op, *args, **kwargs):
        y, ctx = getattr(F, op + "_forward")(*args, **kwargs)
        return (lambda g: getattr(F, op + "_backward")(g, ctx)), np.shape(y)

    def rnn_pair(op, *args):
        y, _, ctx = getattr(F, op + "_forward")(*args)
        return (lambda g: getattr(F, op + "_backward")((g, None), ctx)[0]), y.shape

    registry = {
        "conv2d_backward": pair("conv2d", x4, W_CONV),
        "conv1d_backward": pair("conv1d", x3, W_CONV[:, :, 0]),
        "linear_backward": pair("linear", x2, W_LIN),
        "max_pool2d_backward": pair("max_pool2d", x4, 2),
        "relu_max_pool2d_backward": pair("relu_max_pool2d", x4, 2),
        "avg_pool2d_backward": pair("avg_pool2d", x4, 2),
        "adaptive_avg_pool2d_backward": pair("adaptive_avg_pool2d", x4, 2),
        "adaptive_max_pool2d_backward": pair("adaptive_max_pool2d", x4, 2),
        "relu_backward": pair("relu", x2),
        "leaky_relu_backward": pair("leaky_relu", x2, 0.1),
        "prelu_backward": pair("prelu", x4, np.full(3, 0.25, np.float32)),
        "sigmoid_backward": pair("sigmoid", x2),
        "tanh_backward": pair("tanh", x2),
        "gelu_backward": pair("gelu", x2),
        "silu_backward": pair("silu", x2),
        "softmax_backward": pair("softmax", x2),
        "log_softmax_backward": pair("log_softmax", x2, 0),
        "dropout_backward": pair("dropout", x2, 0.5),
        "batch_norm_backward": pair("batch_norm", x4, None, None, training=True),
        "layer_norm_backward": pair("layer_norm", x2, (6,)),
        "embedding_backward": pair("embedding", np.array([[0, 2], [1, 1]]), rand(3, 4)),
        "rnn_layer_backward": rnn_pair("rnn_layer", "GRU", xs, rand(21, 6), rand(21, 7)),
        "rnn_layer_varlen_backward": rnn_pair("rnn_layer_varlen", "LSTM", xs, np.array([4, 2]), W_IH, W_HH),
        "activation_backward": ((lambda g: F.activation_backward(g, x2, "tanh")), x2.shape),
    }
    # The losses' grad_output is the loss's own gradient: a number, or one per element ('none').
    for loss, args in (("cross_entropy", (x2, target)), ("mse_loss", (x2, rand(3, 6))),
                       ("binary_cross_entropy_with_logits", (x2, rand(3, 6)))):
        registry[loss + "_backward"] = pair(loss, *args, reduction="none")
    return registry


FUNCTIONAL_BACKWARDS = sorted(_make_functional_backwards())
# backwards that return no input gradient (integer indices): checked without a float result
NO_INPUT_GRADIENT = {"embedding_backward"}


@pytest.mark.parametrize("name", FUNCTIONAL_BACKWARDS)
def test_functional_backwards_check_the_gradient(name):
    backward, shape = _make_functional_backwards()[name]
    result = backward(np.ones(shape, np.float32))
    assert result is None if name in NO_INPUT_GRADIENT else result.dtype == np.float32
    wrong = shape[:-1] + (shape[-1] + 1,)
    with pytest.raises(ValueError, match=r"grad.*" + re.escape(str(wrong))):
        backward(np.ones(wrong, np.float32))
    if name not in NO_INPUT_GRADIENT and not name.startswith(("cross_entropy", "mse", "binary")):
        with pytest.raises(TypeError, match=r"grad.*float64"):
            backward(np.ones(shape, np.float64))


@pytest.mark.parametrize("name", FUNCTIONAL_BACKWARDS)
def test_functional_backwards_refuse_a_hand_built_context(name):
    if name == "activation_backward":
        return  # reads the output y, no ctx
    backward = getattr(F, name)
    grad = np.ones(_make_functional_backwards()[name][1], np.float32)
    # (relu, sigmoid, tanh, silu and dropout keep one array as their ctx: it is checked as an array)
    with pytest.raises(TypeError, match=r"ctx: expected the \w+ that \w+_forward returned|"
                                        r"(output|input|mask): expected a float32 or float64 array"):
        backward((grad, None) if name.startswith("rnn") else grad, ("a", "hand-built", "tuple"))


def test_every_op_is_registered():
    """A new op must join the registries above: this names the ones it is missing from."""
    backwards = {n for n in F.__all__ if n.endswith("_backward")}
    missing = sorted(backwards - set(FUNCTIONAL_BACKWARDS))
    assert not missing, f"add to _make_functional_backwards (FUNCTIONAL_BACKWARDS): {missing}"
    forwards = {n[:-len("_backward")] for n in backwards} - {"activation"}
    missing = sorted(f"F.{n}" for n in forwards if f"F.{n}" not in ENTRY_POINTS)
    assert not missing, f"add to ENTRY_POINTS: {missing}"
    modules = {n for n in nn.__all__ if isinstance(getattr(nn, n), type) and issubclass(getattr(nn, n), nn.Module)}
    # containers, losses (their own tests below) and the base classes hold no backward of their own here
    exempt = {"Module", "Sequential", "ModuleList", "ModuleDict", "Embedding", "RNNCell", "LSTMCell", "GRUCell",
              "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"}
    missing = sorted(modules - exempt - set(MODULES))
    assert not missing, f"add to MODULES: {missing}"
    missing = sorted(f"nn.{n}" for n in modules - exempt - {"Identity"} if f"nn.{n}" not in ENTRY_POINTS)
    assert not missing, f"add to ENTRY_POINTS: {missing}"


def test_linear_backward_checks_its_gradient_buffers():
    x, gy = rand(3, 6), rand(3, 5)
    _, ctx = F.linear_forward(x, W_LIN)
    with pytest.raises(ValueError, match=r"grad_weight: expected shape \(5, 6\), got \(5, 5\)"):
        F.linear_backward(gy, ctx, np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match=r"grad_bias: expected shape \(5,\), got \(4,\)"):
        F.linear_backward(gy, ctx, None, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match=r"grad_weight: dtype float64 does not match the input's dtype float32"):
        F.linear_backward(gy, ctx, np.zeros((5, 6)))
    with pytest.raises(ValueError, match=r"input: expected shape \(\*, 6\) to match weight of shape \(5, 6\), got \(3, 4\)"):
        F.linear_backward(gy, ctx._replace(input=rand(3, 4)))  # a hand-edited ctx is checked again
    # a strided input gives what the contiguous one gives
    wide = np.zeros((3, 12), np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(F.linear_backward(gy, F.linear_forward(wide[:, ::2], W_LIN)[1]),
                                  F.linear_backward(gy, ctx))


def test_losses_backward_before_forward():
    for loss in (nn.CrossEntropyLoss(), nn.MSELoss(), nn.BCEWithLogitsLoss()):
        with pytest.raises(RuntimeError, match=r"backward: no forward to differentiate"):
            loss.backward()
    loss = nn.CrossEntropyLoss(reduction="none")
    loss(rand(3, 4), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"grad_output: expected a scalar or shape \(3,\) .*got \(4,\)"):
        loss.backward(np.ones(4))
    loss(rand(3, 4), np.array([0, 1, 2]))
    loss.backward()
    with pytest.raises(RuntimeError, match=r"no forward to differentiate"):
        loss.backward()


def test_embedding_backward_before_forward_and_wrong_grad():
    emb = nn.Embedding(10, 3)
    with pytest.raises(RuntimeError, match=r"Embedding.backward: no forward"):
        emb.backward(np.ones((2, 3), np.float32))
    emb(np.array([1, 2]))
    with pytest.raises(ValueError, match=r"Embedding.backward: grad_output: expected shape \(2, 3\) .*got \(2, 4\)"):
        emb.backward(np.ones((2, 4), np.float32))


def test_rnn_backward_state_gradients_of_the_wrong_shape():
    lstm = nn.LSTM(6, 7)
    y, _ = lstm(rand(4, 2, 6))
    with pytest.raises(ValueError, match=r"LSTM: backward: grad_c_n has shape \(1, 2, 6\), expected the returned state's shape \(1, 2, 7\)"):
        lstm.backward(np.ones_like(y), (None, np.ones((1, 2, 6), np.float32)))
    y, _ = lstm(rand(4, 2, 6))
    with pytest.raises(TypeError, match=r"LSTM: backward: grad_state: expected a pair \(grad_h_n, grad_c_n\), got ndarray"):
        lstm.backward(np.ones_like(y), np.ones((1, 2, 7), np.float32))


# ---------------------------------------------------------------------------------------
# load_state_dict

def test_load_state_dict_lists_every_problem_and_changes_nothing():
    pycore.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(36, 2))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = {k: v + 1 for k, v in model.state_dict().items()}
    del sd["1.running_var"]
    sd["3.weight"] = np.zeros((2, 35), np.float32)
    sd["0.weight"] = np.zeros((4, 3, 3, 3), np.float32)  # valid: must not be written either
    sd["4.weight"] = np.zeros(3, np.float32)
    with pytest.raises(nn.StateDictError) as info:
        model.load_state_dict(sd)
    message = str(info.value)
    assert "missing key: 1.running_var" in message
    assert "unexpected key: 4.weight" in message
    assert "size mismatch for 3.weight: the checkpoint has shape (2, 35), the model has shape (2, 36)" in message
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    sd2 = dict(model.state_dict())
    sd2["0.bias"] = np.array(["a", "b", "c", "d"])
    with pytest.raises(nn.StateDictError, match=r"0.bias: expected a numeric array, got dtype <U1"):
        model.load_state_dict(sd2)
    with pytest.raises(TypeError, match=r"load_state_dict: expected a mapping of name -> array, got list"):
        model.load_state_dict([1, 2])


def test_load_state_dict_with_a_read_only_parameter_writes_nothing():
    # The last layer's weight is read-only: found while validating, before the first layer is written.
    pycore.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].weight.data.setflags(write=False)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(nn.StateDictError, match=r"2.weight: the model's array is read-only"):
        model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_state_dict_of_a_recurrent_model_names_the_layer_keys():
    pycore.manual_seed(0)
    lstm = nn.LSTM(6, 7, num_layers=2)
    sd = {k: v.copy() for k, v in nn.LSTM(6, 8, num_layers=1).state_dict().items()}
    with pytest.raises(nn.StateDictError) as info:
        lstm.load_state_dict(sd)
    message = str(info.value)
    for key in ("weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"):
        assert f"missing key: {key}" in message
    assert "size mismatch for weight_hh_l0: the checkpoint has shape (32, 8), the model has shape (28, 7)" in message
    result = lstm.load_state_dict({k: v for k, v in lstm.state_dict().items() if "l1" not in k}, strict=False)
    assert sorted(result.missing_keys) == ["bias_hh_l1", "bias_ih_l1", "weight_hh_l1", "weight_ih_l1"]


# ---------------------------------------------------------------------------------------
# Memory layouts: every module and function gives bit-identical results for the
# contiguous array and for a strided, reversed, read-only or Fortran-ordered one.

def _layouts(x):
    """(name, array equal to x) in odd layouts."""
    wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    wide[..., ::2] = x
    reversed_copy = np.ascontiguousarray(x[::-1])
    read_only = x.copy()
    read_only.setflags(write=False)
    return [("strided", wide[..., ::2]),
            ("negative strides", reversed_copy[::-1]),
            ("read-only", read_only),
            ("Fortran", np.asfortranarray(x)),
            ("transposed view", np.ascontiguousarray(x.T).T)]


def _run_module(make, x, grad_layout=None):
    """forward and backward of a fresh module; returns every array produced."""
    pycore.manual_seed(0)
    m = make()
    pycore.manual_seed(1)  # the same dropout mask every time
    y = m(x)
    y0 = _output(y)
    g = np.cos(np.arange(y0.size, dtype=np.float32)).reshape(y0.shape)
    if grad_layout is not None:
        g = dict(_layouts(g))[grad_layout]
    gx = m.backward(g)
    outs = [y0] + ([s for s in (y[1] if isinstance(y[1], tuple) else (y[1],))] if isinstance(y, tuple) else [])
    return outs + [gx] + [p.grad.copy() for p in m.parameters()]


@pytest.mark.parametrize("layout", ["strided", "negative strides", "read-only", "Fortran", "transposed view"])
@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_gives_identical_results_for_odd_layouts(name, layout):
    make, shape = MODULES[name]
    x = rand(*shape)
    expected = _run_module(make, x)
    odd = dict(_layouts(x))[layout]
    for got, want in zip(_run_module(make, odd, grad_layout=layout), expected):
        np.testing.assert_array_equal(got, want)


def _functional_calls():
    x4, x2, xs = rand(2, 3, 5, 5), rand(3, 6), rand(4, 2, 6)
    return {
        "conv2d": (lambda x, w: F.conv2d(x, w, rand_bias, padding=1, stride=2), [x4, W_CONV]),
        "max_pool2d": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1), [x4]),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 2, ceil_mode=True), [x4]),
        "linear": (lambda x, w: F.linear(x, w), [x2, W_LIN]),
        "matmul": (lambda a, b: F.matmul(a, b), [x2, W_LIN.T.copy()]),
        "softmax": (lambda x: F.softmax(x, dim=0), [x2]),
        "log_softmax": (lambda x: F.log_softmax(x, dim=1), [x2]),
        "relu": (F.relu, [x2]),
        "batch_norm": (lambda x: F.batch_norm(x, None, None, training=True), [x4]),
        "rnn_layer": (lambda x, wi, wh: F.rnn_layer("GRU", x, wi, wh)[0], [xs, rand(21, 6), rand(21, 7)]),
        "cross_entropy": (lambda x: F.cross_entropy(x, np.array([0, 5, 1])), [x2]),
        "mse_loss": (lambda x, t: F.mse_loss(x, t), [x2, rand(3, 6)]),
    }


rand_bias = rand(4)


@pytest.mark.parametrize("layout", ["strided", "negative strides", "read-only", "Fortran", "transposed view"])
def test_every_function_gives_identical_results_for_odd_layouts(layout):
    for name, (call, args) in _functional_calls().items():
        expected = call(*args)
        for i in range(len(args)):
            odd = list(args)
            odd[i] = dict(_layouts(args[i]))[layout]
            np.testing.assert_array_equal(call(*odd), expected, err_msg=f"{name}, argument {i}")


def test_inputs_are_not_modified():
    x = rand(2, 3, 5, 5)
    keep = x.copy()
    m = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
    y = m(x)
    m.backward(np.ones_like(y))
    np.testing.assert_array_equal(x, keep)


# ---------------------------------------------------------------------------------------
# Sizes beyond int64: rejected from the shape alone, before anything is copied, allocated
# or handed to C++. The inputs are zero-stride views of one element: they cost nothing.

def huge(shape, dtype=np.float32):
    return np.broadcast_to(np.zeros((1,) * len(shape), dtype), shape)


@pytest.fixture
def no_kernels(monkeypatch):
    """Make every kernel entry point fail the test if it is reached."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a kernel ran")
    for module in (_C, _pool2d):
        for name in dir(module):
            if name.endswith(("_forward", "_backward")) or name == "gemm":
                monkeypatch.setattr(module, name, forbidden)


@pytest.mark.parametrize("call, match", [
    # output N * C_out * H_out * W_out = 2^30 * 2^20 * 2^4 * 2^4 > 2^63 / 4
    (lambda: F.conv2d(huge((2**40, 1, 4, 4)), huge((2**20, 1, 1, 1))),
     r"input: the output would hold 18446744073709551616 elements .*for shape \(1099511627776, 1048576, 4, 4\)"),
    # one image's column matrix: C_in * kH * kW * H_out * W_out = 2^21 * 2^20 * 2^22
    (lambda: F.conv2d(huge((1, 2**21, 2**11, 2**11)), huge((1, 2**21, 2**10, 2**10)), padding=2**9),
     r"input: the column buffer would hold \d+ elements .*for shape \(2199023255552, 4198401\)"),
    # 2^60 one-pixel planes (2^62 bytes): padding makes each output plane 2x2, past int64 bytes
    (lambda: F.max_pool2d(huge((2**30, 2**30, 1, 1)), 2, stride=1, padding=1),
     r"max_pool2d: the output would hold 4611686018427387904 elements .*for shape \(1073741824, 1073741824, 2, 2\)"),
    (lambda: F.avg_pool2d(huge((2**60, 1, 1)), 2, stride=1, padding=1), r"avg_pool2d: the output would hold \d+ elements"),
    (lambda: F.linear(huge((2**40, 4)), huge((2**30, 4))), r"linear: the output would hold 1180591620717411303424 elements .*for shape \(1099511627776, 1073741824\)"),
    (lambda: F.matmul(huge((2**40, 4)), huge((4, 2**30))), r"gemm: the output would hold \d+ elements .*for shape \(1099511627776, 1073741824\)"),
    (lambda: F.rnn_layer("LSTM", huge((2**40, 2**20, 1)), huge((4 * 2**10, 1)), huge((4 * 2**10, 2**10))),
     r"input: the gates would hold \d+ elements .*for shape \(1099511627776, 1048576, 4096\)"),
])
def test_sizes_beyond_int64_are_rejected_before_any_copy_or_kernel(call, match, no_kernels):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.skipif(_C.sanitize_build, reason="AddressSanitizer aborts on a terabyte malloc instead of failing it")
def test_large_but_representable_shapes_fail_cleanly_before_any_kernel(no_kernels):
    """A 2^40-element batch is a valid shape, not memory this machine has: numpy's own
    MemoryError (or its 'too big' ValueError), raised before any C++ runs, is the clean answer."""
    for call in (lambda: F.conv2d(huge((2**20, 1, 2**10, 2**10)), W_CONV[:, :1]),
                 lambda: F.max_pool2d(huge((2**20, 2**10, 2**10)), 2),
                 lambda: F.relu(huge((2**20, 2**20))),
                 lambda: nn.LSTM(1, 4)(huge((2**20, 2**20, 1)))):
        with pytest.raises((MemoryError, ValueError)):
            call()


def test_the_conv_geometry_is_exact_beyond_32_bits():
    """Shape arithmetic in Python ints: a 2^33-pixel image gives the exact output shape."""
    geo = F.conv.conv2d_geometry((1, 1, 2**17 + 3, 2**16 + 5), (1, 1, 3, 3), stride=2, padding=1)
    assert geo.output_shape == (1, 1, (2**17 + 3 + 2 - 3) // 2 + 1, (2**16 + 5 + 2 - 3) // 2 + 1)
    g = F.pooling.pool_geometry(huge((1, 2**33 + 1, 7)), 2, None, 0, True, "max_pool2d")
    assert g.output_shape == (1, 2**32 + 1, 4)
