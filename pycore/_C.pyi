"""
pycore's compiled kernels (C++ and OpenMP). Use pycore.functional and pycore.nn.
"""
from __future__ import annotations
import numpy
import typing
__all__: list[str] = ['GRU', 'LSTM', 'RNN_RELU', 'RNN_TANH', 'adam_step', 'batch_norm_backward', 'batch_norm_forward', 'bce_with_logits_backward', 'bce_with_logits_forward', 'channel_sum', 'compiler', 'conv2d_algorithm', 'conv2d_backward', 'conv2d_forward', 'conv2d_set_algorithm', 'cross_entropy_backward', 'cross_entropy_forward', 'dropout_backward', 'dropout_forward', 'gemm', 'gemm_prepacked', 'get_num_threads', 'in_forked_child', 'leaky_relu_backward', 'leaky_relu_forward', 'memory_empty_cache', 'memory_enter', 'memory_handler', 'memory_handler_name', 'memory_leave', 'memory_set_cache_limit', 'memory_stats', 'mse_backward', 'mse_forward', 'native_build', 'openmp_enabled', 'openmp_version', 'prelu_backward', 'prelu_forward', 'relu_backward', 'relu_forward', 'rmsprop_step', 'rnn_backward', 'rnn_forward', 'sanitize_build', 'set_num_threads', 'set_simd_path', 'sgd_step', 'sigmoid_backward', 'sigmoid_forward', 'simd_path', 'softmax_backward', 'softmax_forward', 'tanh_backward', 'tanh_forward']
def _memory_scratch_selftest(count: typing.SupportsInt | typing.SupportsIndex) -> tuple[float, int]:
    ...
def adam_step(param: numpy.ndarray, grad: numpy.ndarray, exp_avg: numpy.ndarray, exp_avg_sq: numpy.ndarray, max_exp_avg_sq: numpy.ndarray | None, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, decoupled_weight_decay: bool, step_size: typing.SupportsFloat | typing.SupportsIndex, bias_correction2_sqrt: typing.SupportsFloat | typing.SupportsIndex, maximize: bool) -> None:
    """
    One Adam/AdamW update of param and its moments in place.
    """
def batch_norm_backward(dx: typing.Any, grad_weight: typing.Any, grad_bias: typing.Any, dy: numpy.ndarray, x: numpy.ndarray, mean: numpy.ndarray, invstd: numpy.ndarray, weight: typing.Any, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, training: bool) -> None:
    """
    gradients of batch_norm (x viewed as (outer, channels, inner)); accumulates into grad_weight and grad_bias
    """
def batch_norm_forward(y: numpy.ndarray, mean: numpy.ndarray, invstd: numpy.ndarray, x: numpy.ndarray, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    per-channel batch normalisation of x viewed as (outer, channels, inner) = (N, C, H*W); updates the running statistics in training
    """
def bce_with_logits_backward(dlosses: numpy.ndarray, input: numpy.ndarray, target: numpy.ndarray, pos_weight: numpy.ndarray | None) -> numpy.ndarray:
    """
    gradient of the input given the gradient of each element's loss or of all.
    """
def bce_with_logits_forward(input: numpy.ndarray, target: numpy.ndarray, pos_weight: numpy.ndarray | None, keep_elements: bool) -> tuple:
    """
    (sum of the element losses, the element losses or None).
    """
def channel_sum(out: numpy.ndarray, x: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    out[c] += sum of x viewed as (outer, channels, inner) over axes 0 and 2, in an order that does not depend on the thread count (a bias gradient). x must be C-contiguous.
    """
def conv2d_algorithm() -> str:
    """
    The conv2d_set_algorithm setting.
    """
def conv2d_backward(grad_input: typing.Any, grad_weight: typing.Any, grad_bias: typing.Any, grad_output: numpy.ndarray, input: numpy.ndarray, weight: numpy.ndarray, stride_h: typing.SupportsInt | typing.SupportsIndex, stride_w: typing.SupportsInt | typing.SupportsIndex, pad_top: typing.SupportsInt | typing.SupportsIndex, pad_bottom: typing.SupportsInt | typing.SupportsIndex, pad_left: typing.SupportsInt | typing.SupportsIndex, pad_right: typing.SupportsInt | typing.SupportsIndex, dilation_h: typing.SupportsInt | typing.SupportsIndex, dilation_w: typing.SupportsInt | typing.SupportsIndex, groups: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Gradients of conv2d_forward: grad_input is overwritten, grad_weight and grad_bias are added into; any of the three may be None to skip it.
    """
def conv2d_forward(out: numpy.ndarray, input: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride_h: typing.SupportsInt | typing.SupportsIndex, stride_w: typing.SupportsInt | typing.SupportsIndex, pad_top: typing.SupportsInt | typing.SupportsIndex, pad_bottom: typing.SupportsInt | typing.SupportsIndex, pad_left: typing.SupportsInt | typing.SupportsIndex, pad_right: typing.SupportsInt | typing.SupportsIndex, dilation_h: typing.SupportsInt | typing.SupportsIndex, dilation_w: typing.SupportsInt | typing.SupportsIndex, groups: typing.SupportsInt | typing.SupportsIndex, activation: typing.SupportsInt | typing.SupportsIndex = 0, negative_slope: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    out (N, OC, OH, OW) = act(conv2d(input, weight) + bias), written in place; returns out. bias may be None; activation is a code (0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid).
    """
def conv2d_set_algorithm(name: str) -> None:
    """
    For tests and measurements: how conv2d computes, 'auto' (per shape), 'im2col', 'implicit' (columns straight into the GEMM's packed panels; forward only), 'direct' (at most 16 float output channels, one group; forward and weight gradient) or 'direct_rows' (the same with vectors along output rows, where the stride along the width is 1 and rows are two vectors long; else as 'direct'). The forward's bits are the same for all; the weight gradients agree up to rounding.
    """
def cross_entropy_backward(dlosses: numpy.ndarray, logsumexp: numpy.ndarray, logits: numpy.ndarray, targets: numpy.ndarray, weight: numpy.ndarray | None, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, ignore_index: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray:
    """
    dlogits (R, C) given the gradient of each row's loss (R,) or of all (1,).
    """
def cross_entropy_forward(logits: numpy.ndarray, targets: numpy.ndarray, weight: numpy.ndarray | None, label_smoothing: typing.SupportsFloat | typing.SupportsIndex, ignore_index: typing.SupportsInt | typing.SupportsIndex) -> tuple:
    """
    (losses (R,), float64 logsumexp (R,)) of cross entropy over logits (R, C) with int64 targets (R,).
    """
def dropout_backward(dx: numpy.ndarray, dy: numpy.ndarray, mask: numpy.ndarray) -> None:
    """
    dx = dy * mask
    """
def dropout_forward(y: numpy.ndarray, mask: numpy.ndarray, x: numpy.ndarray, u: numpy.ndarray, p: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    mask = (u >= p) / (1 - p); y = x * mask
    """
def gemm(a: numpy.ndarray, b: numpy.ndarray, c: numpy.ndarray, trans_a: bool = False, trans_b: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, row_bias: typing.Any = None, col_bias: typing.Any = None, activation: typing.SupportsInt | typing.SupportsIndex = 0, negative_slope: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    c = act(alpha * op(a) @ op(b) + beta * c + bias), in place; returns c. c must be C-contiguous. The bias (row_bias (M,) or col_bias (N,), optional) and the activation (a code: 0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid) are the GEMM's epilogue (gemm.h).
    """
def gemm_prepacked(side: str, a: numpy.ndarray, b: numpy.ndarray, cs: list, trans_a: bool = False, trans_b: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> list:
    """
    For tests: gemm with operand `side` ('a' or 'b') packed once (PackedMatrix) and reused for every C-contiguous array in the list cs; returns cs.
    """
def get_num_threads() -> int:
    """
    Threads each kernel may use.
    """
def in_forked_child() -> bool:
    """
    True in a process forked after pycore was imported (kernels then run on one thread).
    """
def leaky_relu_backward(dx: numpy.ndarray, dy: numpy.ndarray, x: numpy.ndarray, negative_slope: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    dx = dy * (x > 0 ? 1 : negative_slope)
    """
def leaky_relu_forward(y: numpy.ndarray, x: numpy.ndarray, negative_slope: typing.SupportsFloat | typing.SupportsIndex) -> None:
    """
    y = x > 0 ? x : negative_slope * x
    """
def memory_empty_cache() -> None:
    """
    Return every cached free block to the system.
    """
def memory_enter():
    """
    Install the pool as numpy's allocator in this context; returns what memory_leave needs to undo it (None when it was already installed).
    """
def memory_leave(previous):
    """
    Undo memory_enter: put back the handler it returned.
    """
def memory_set_cache_limit(bytes: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    The most bytes of free blocks the pool keeps; frees the cache when it already holds more.
    """
def memory_stats() -> dict:
    """
    The pool's counters: hits, misses, cached_bytes, cache_limit, live_blocks.
    """
def mse_backward(dlosses: numpy.ndarray, input: numpy.ndarray, target: numpy.ndarray) -> numpy.ndarray:
    """
    2 (input - target) * dlosses.
    """
def mse_forward(input: numpy.ndarray, target: numpy.ndarray, keep_elements: bool) -> tuple:
    """
    (sum of (input - target)^2, the element losses or None).
    """
def openmp_enabled() -> bool:
    """
    True when the kernels were built with OpenMP.
    """
def openmp_version() -> int:
    """
    The _OPENMP macro of the build (yyyymm), 0 without OpenMP.
    """
def prelu_backward(dx: typing.Any, grad_weight: typing.Any, dy: numpy.ndarray, x: numpy.ndarray, weight: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    dx = dy * (x > 0 ? 1 : weight[c]) (dx None: skipped); adds sum of (x > 0 ? 0 : dy * x) per channel into grad_weight (None: skipped)
    """
def prelu_forward(y: numpy.ndarray, x: numpy.ndarray, weight: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, channels: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    y = x > 0 ? x : weight[c] * x, x viewed as (outer, channels, inner) (one slope: channels = 1)
    """
def relu_backward(dx: numpy.ndarray, dy: numpy.ndarray, y: numpy.ndarray) -> None:
    """
    dx = dy * (y > 0)
    """
def relu_forward(y: numpy.ndarray, x: numpy.ndarray) -> None:
    """
    y = max(x, 0)
    """
def rmsprop_step(param: numpy.ndarray, grad: numpy.ndarray, square_avg: numpy.ndarray, grad_avg: numpy.ndarray | None, momentum_buffer: numpy.ndarray | None, lr: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, maximize: bool) -> None:
    """
    One RMSprop update of param and its state in place.
    """
def rnn_backward(mode: typing.SupportsInt | typing.SupportsIndex, dx: typing.Any, dh0: typing.Any, dc0: typing.Any, dw_ih: numpy.ndarray, dw_hh: numpy.ndarray, db_ih: typing.Any, db_hh: typing.Any, dy: typing.Any, dh_n: typing.Any, dc_n: typing.Any, y: numpy.ndarray, gates: numpy.ndarray, cell: typing.Any, cell_tanh: typing.Any, x: numpy.ndarray, h0: typing.Any, c0: typing.Any, w_ih: numpy.ndarray, w_hh: numpy.ndarray) -> None:
    """
    Backward through time of rnn_forward: writes dx, dh0, dc0 and adds into the parameter gradients.
    """
def rnn_forward(mode: typing.SupportsInt | typing.SupportsIndex, y: numpy.ndarray, gates: numpy.ndarray, cell: typing.Any, cell_tanh: typing.Any, x: numpy.ndarray, h0: typing.Any, c0: typing.Any, w_ih: numpy.ndarray, w_hh: numpy.ndarray, b_ih: typing.Any, b_hh: typing.Any) -> None:
    """
    One recurrent layer over T steps (csrc/rnn.h): fills y (T, N, H) and the saved buffers in place.
    """
def set_num_threads(n: int) -> None:
    """
    Set the threads each kernel may use (n >= 1). Takes effect at the next kernel call.
    """
def set_simd_path(name: str) -> bool:
    """
    Use the micro-kernels for 'avx512f', 'avx2+fma', 'generic' or 'auto'; False if the CPU lacks that instruction set. For tests and benchmarks.
    """
def sgd_step(param: numpy.ndarray, grad: numpy.ndarray, momentum_buffer: numpy.ndarray | None, lr: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, dampening: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool, maximize: bool, first_step: bool) -> None:
    """
    One SGD update of param (and momentum_buffer) in place.
    """
def sigmoid_backward(dx: numpy.ndarray, dy: numpy.ndarray, y: numpy.ndarray) -> None:
    """
    dx = dy * y * (1 - y)
    """
def sigmoid_forward(y: numpy.ndarray, x: numpy.ndarray) -> None:
    """
    y = 1 / (1 + exp(-x))
    """
def simd_path() -> str:
    """
    Instruction set of the GEMM micro-kernels in use.
    """
def softmax_backward(dx: numpy.ndarray, dy: numpy.ndarray, y: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, dim: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, log_output: bool) -> None:
    """
    gradient of softmax (or log_softmax) from its output y
    """
def softmax_forward(y: numpy.ndarray, x: numpy.ndarray, outer: typing.SupportsInt | typing.SupportsIndex, dim: typing.SupportsInt | typing.SupportsIndex, inner: typing.SupportsInt | typing.SupportsIndex, log_output: bool) -> None:
    """
    softmax (or log_softmax) along the middle axis of x viewed as (outer, dim, inner)
    """
def tanh_backward(dx: numpy.ndarray, dy: numpy.ndarray, y: numpy.ndarray) -> None:
    """
    dx = dy * (1 - y^2)
    """
def tanh_forward(y: numpy.ndarray, x: numpy.ndarray) -> None:
    """
    y = tanh(x)
    """
GRU: int
LSTM: int
RNN_RELU: int
RNN_TANH: int
__version__: str
compiler: str
memory_handler: typing.Any
memory_handler_name: str
native_build: bool
sanitize_build: bool
