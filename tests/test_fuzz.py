"""Issue 6, fuzzing: hypothesis draws valid and invalid combinations over the whole parameter
space of conv2d, max/avg pooling and RNN/LSTM/GRU (sizes down to zero and below, kernels
larger than the input, bad groups and paddings, mismatched channels, input sizes and states,
odd dtypes and memory layouts). The test decides on its own whether a call is valid: a valid
call must match a naive numpy reference written here, an invalid one must raise TypeError
(for a dtype) or ValueError (for a size or value) with a message. Anything else (a crash,
IndexError, ZeroDivisionError, OverflowError, NotImplementedError) fails.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import pycore
import pycore.functional as F
import pycore.nn as nn


def fuzz_settings(examples):
    # Scaled by the loaded profile: "pycore" (100 examples) runs `examples`, the sanitizer
    # run's "sanitize" profile (10) a tenth of them.
    return settings(max_examples=max(10, examples * settings.default.max_examples // 100), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# Mostly valid values, so that valid and invalid calls both come up often; each invalid
# choice is one of several entries.
DTYPES = st.sampled_from([np.float32] * 8 + [np.float64] * 6 + [np.float16, np.int32, np.bool_, np.complex64])
LAYOUTS = st.sampled_from(["C", "Fortran", "reversed", "strided", "read-only"])


def in_layout(x, layout):
    """x itself (same values) in the named memory layout."""
    if layout == "Fortran":
        return np.asfortranarray(x)
    if layout == "reversed" and x.ndim:
        return np.ascontiguousarray(x[::-1])[::-1]
    if layout == "strided" and x.ndim:
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if layout == "read-only":
        x = x.copy()
        x.setflags(write=False)
    return x


def values(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.dtype(dtype) == np.bool_:
        return x > 0
    return x.astype(dtype)


def expect_clean_error(call, dtype_ok):
    """An invalid call raises TypeError for a dtype, ValueError otherwise, with a message."""
    kind = ValueError if dtype_ok else TypeError
    with pytest.raises(Exception) as info:
        call()
    assert type(info.value) is kind or (kind is ValueError and isinstance(info.value, ValueError)), \
        f"expected {kind.__name__}, got {type(info.value).__name__}: {info.value}"
    assert len(str(info.value)) > 10


def close(got, want, dtype):
    tol = 2e-4 if np.dtype(dtype) == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max(initial=0))))


# ---------------------------------------------------------------------------------------
# conv2d

def conv_reference(x, w, b, stride, pads, dilation, groups):
    """Direct cross-correlation in float64 over a zero-padded copy of x."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, _, h, wd = x.shape
    oc_total, c_group, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    oh = (h + pads[0] + pads[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + pads[2] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, oc_total, oh, ow))
    per_group = oc_total // groups
    for oc in range(oc_total):
        g = oc // per_group
        for c in range(c_group):
            for i in range(kh):
                for j in range(kw):
                    r0, c0 = i * dilation[0], j * dilation[1]
                    patch = xp[:, g * c_group + c, r0:r0 + stride[0] * (oh - 1) + 1:stride[0],
                               c0:c0 + stride[1] * (ow - 1) + 1:stride[1]]
                    out[:, oc] += w[oc, c, i, j] * patch
        if b is not None:
            out[:, oc] += b[oc]
    return out


def mostly(valid, invalid, repeat=4):
    """Draw from `valid` most of the time and from `invalid` now and then."""
    return st.sampled_from(list(valid) * repeat + list(invalid))


@fuzz_settings(500)
@given(n=mostly([1, 2], [0]), c_group=mostly([1, 2, 3], [0]), h=mostly(range(1, 7), [0], 2),
       w=mostly(range(1, 7), [0], 2), groups=mostly([1, 1, 2, 3], [0, -1]), out_per_group=st.integers(1, 2),
       channel_error=mostly([0], [1, -1], 10), kh=mostly([1, 2, 3, 4], [0, -1], 3),
       kw=mostly([1, 2, 3, 4], [0, -1], 3), stride=st.tuples(mostly([1, 1, 2, 3], [0, -1]), mostly([1, 1, 2, 3], [0])),
       dilation=st.tuples(mostly([1, 1, 2], [0]), mostly([1, 1, 2], [-1])),
       padding=st.one_of(mostly([0, 1, 2, 3], [-1]), st.tuples(mostly([0, 1, 2], [-1]), mostly([0, 1, 2, 3], [])),
                         st.sampled_from(["same", "valid"])),
       bias=st.booleans(), dtype=DTYPES, layout=LAYOUTS, seed=st.integers(0, 2**16))
def test_conv2d_matches_the_reference_or_raises_cleanly(n, c_group, h, w, groups, out_per_group, channel_error, kh, kw,
                                                       stride, dilation, padding, bias, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    g_for_shape = max(groups, 1)
    c_out = out_per_group * g_for_shape
    c_in = max(c_group * g_for_shape + channel_error, 0)  # channel_error: input channels not matching the weight
    if c_group < 1 or kh < 1 or kw < 1:
        # A weight with an empty or negative axis: no array to build; numpy refuses negative sizes.
        weight = np.zeros((c_out, max(c_group, 0), max(kh, 0), max(kw, 0)), dtype)
    else:
        weight = values(rng, (c_out, c_group, kh, kw), dtype)
    x = in_layout(values(rng, (n, c_in, h, w), dtype), layout)
    b = values(rng, (c_out,), dtype) if bias else None

    dtype_ok = np.dtype(dtype) in (np.float32, np.float64)
    valid = dtype_ok and min(stride) >= 1 and min(dilation) >= 1 and groups >= 1 and min(c_in, h, w) >= 1
    valid = valid and c_group >= 1 and kh >= 1 and kw >= 1 and c_in % groups == 0 and c_group * groups == c_in
    if isinstance(padding, str):
        valid = valid and (padding == "valid" or tuple(stride) == (1, 1))
        if padding == "valid":
            pads = (0, 0, 0, 0)
        else:
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    else:
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        valid = valid and min(ph, pw) >= 0
        pads = (ph, ph, pw, pw)
    if valid:
        oh = (h + pads[0] + pads[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + pads[2] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
        valid = oh >= 1 and ow >= 1

    def call():
        return F.conv2d(x, weight, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

    event("valid" if valid else "invalid")
    if not valid:
        expect_clean_error(call, dtype_ok)
        return
    close(call(), conv_reference(x, weight, b, stride, pads, dilation, groups), dtype)


# ---------------------------------------------------------------------------------------
# max/avg pooling

def pool_output_size(size, k, s, p, ceil_mode):
    span = size + 2 * p - k  # may be negative: floor division, as PyTorch's div_rtn
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_reference(x, op, k, s, p, ceil_mode, count_include_pad):
    """One output at a time, PyTorch's window and divisor rules."""
    x = x.astype(np.float64)
    h, w = x.shape[-2:]
    oh, ow = (pool_output_size(h, k[0], s[0], p[0], ceil_mode), pool_output_size(w, k[1], s[1], p[1], ceil_mode))
    out = np.zeros(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            r1, c1 = min(r0 + k[0], h + p[0]), min(c0 + k[1], w + p[1])
            padded_count = (r1 - r0) * (c1 - c0)
            r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            window = x[..., r0:r1, c0:c1]
            if op == "max":
                out[..., i, j] = window.max(axis=(-2, -1))
            else:
                divisor = padded_count if count_include_pad else (r1 - r0) * (c1 - c0)
                out[..., i, j] = window.sum(axis=(-2, -1)) / divisor
    return out


@fuzz_settings(200)
@given(batched=st.booleans(), n=mostly([1, 2], [0]), c=mostly([1, 2, 3], [0]), h=mostly(range(1, 8), [0], 2),
       w=mostly(range(1, 8), [0], 2), op=st.sampled_from(["max", "avg"]),
       kernel=st.tuples(mostly([1, 2, 3, 4], [0, -1], 3), mostly([1, 2, 3, 4], [0, -1], 3)),
       stride=st.one_of(st.none(), st.tuples(mostly([1, 2, 3], [0, -1]), mostly([1, 2, 3], [0, -1]))),
       padding=st.tuples(mostly([0, 0, 1, 2], [-1], 3), mostly([0, 0, 1, 2], [-1], 3)), ceil_mode=st.booleans(),
       count_include_pad=st.booleans(), module=st.booleans(), dtype=DTYPES, layout=LAYOUTS,
       seed=st.integers(0, 2**16))
def test_pooling_matches_the_reference_or_raises_cleanly(batched, n, c, h, w, op, kernel, stride, padding, ceil_mode,
                                                         count_include_pad, module, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    shape = ((n,) if batched else ()) + (c, h, w)
    x = in_layout(values(rng, shape, dtype), layout)
    s = kernel if stride is None else stride
    dtype_ok = np.dtype(dtype) in (np.float32, np.float64)
    valid = (dtype_ok and min(kernel) >= 1 and min(s) >= 1 and min(padding) >= 0 and min(c, h, w) >= 1
             and all(p <= k // 2 for p, k in zip(padding, kernel)))
    valid = valid and min(pool_output_size(size, k, st_, p, ceil_mode)
                          for size, k, st_, p in zip((h, w), kernel, s, padding)) >= 1
    extra = {} if op == "max" else {"count_include_pad": count_include_pad}
    event("valid" if valid else "invalid")

    def call():
        if module:
            layer = (nn.MaxPool2d if op == "max" else nn.AvgPool2d)(kernel, stride, padding, ceil_mode,
                                                                     dtype=np.float64 if np.dtype(dtype) == np.float64
                                                                     else np.float32, **extra)
            return layer(x)
        return (F.max_pool2d if op == "max" else F.avg_pool2d)(x, kernel, stride, padding, ceil_mode, **extra)

    if not valid:
        # A module checks its hyper-parameters when it is built, before it sees the input's dtype.
        constructor_rejects = module and not (min(kernel) >= 1 and min(s) >= 1 and min(padding) >= 0)
        expect_clean_error(call, dtype_ok or constructor_rejects)
        return
    close(call(), pool_reference(x, op, kernel, s, padding, ceil_mode, count_include_pad), dtype)


# ---------------------------------------------------------------------------------------
# RNN / LSTM / GRU

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def recurrent_reference(module, x, state):
    """The cell equations stepped in a Python loop, in float64, from the module's parameters.
    x: (T, N, input_size); state: h (L, N, H), for LSTM (h, c), or None. Returns (y, h_n, c_n)."""
    layers, hidden = module.num_layers, module.hidden_size
    batch = x.shape[1]
    if state is None:
        h0, c0 = np.zeros((layers, batch, hidden)), np.zeros((layers, batch, hidden))
    elif isinstance(state, tuple):
        h0, c0 = (np.asarray(s, np.float64) for s in state)
    else:
        h0, c0 = np.asarray(state, np.float64), None
    seq = x.astype(np.float64)
    h_n, c_n = [], []
    for layer in range(layers):
        p = {k: getattr(module, f"{k}_l{layer}", None) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        w_ih, w_hh = p["weight_ih"].data.astype(np.float64), p["weight_hh"].data.astype(np.float64)
        b_ih = p["bias_ih"].data.astype(np.float64) if p["bias_ih"] is not None else 0.0
        b_hh = p["bias_hh"].data.astype(np.float64) if p["bias_hh"] is not None else 0.0
        h = h0[layer].copy()
        c = None if c0 is None else c0[layer].copy()
        outputs = []
        for x_t in seq:
            gi, gh = x_t @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if module.mode == "LSTM":
                i, f, g, o = np.split(gi + gh, 4, axis=1)
                c = sigmoid(f) * (c if c is not None else 0.0) + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
            elif module.mode == "GRU":
                ir, iz, in_ = np.split(gi, 3, axis=1)
                hr, hz, hn = np.split(gh, 3, axis=1)
                r, z = sigmoid(ir + hr), sigmoid(iz + hz)
                h = (1 - z) * np.tanh(in_ + r * hn) + z * h
            else:
                pre = gi + gh
                h = np.tanh(pre) if module.mode == "RNN_TANH" else np.maximum(pre, 0)
            outputs.append(h)
        seq = np.stack(outputs)
        h_n.append(h)
        c_n.append(c)
    return seq, np.stack(h_n), (np.stack(c_n) if module.mode == "LSTM" else None)


@fuzz_settings(150)
@given(kind=st.sampled_from(["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]), input_size=st.integers(1, 4),
       hidden=st.integers(1, 4), layers=st.integers(1, 2), bias=st.booleans(), batch_first=st.booleans(),
       unbatched=st.booleans(), steps=mostly([1, 2, 3], [0]), batch=mostly([1, 2, 3], [0]),
       feature_error=mostly([0], [1, -1], 10), give_state=st.booleans(),
       state_error=mostly([None], ["layers", "batch", "hidden"], 9), dtype=DTYPES, layout=LAYOUTS,
       seed=st.integers(0, 2**16))
def test_recurrent_layers_match_the_cell_equations_or_raise_cleanly(kind, input_size, hidden, layers, bias,
                                                                    batch_first, unbatched, steps, batch,
                                                                    feature_error, give_state, state_error, dtype,
                                                                    layout, seed):
    rng = np.random.default_rng(seed)
    pycore.manual_seed(seed)
    if kind.startswith("RNN"):
        module = nn.RNN(input_size, hidden, layers, nonlinearity="tanh" if kind == "RNN_TANH" else "relu",
                        bias=bias, batch_first=batch_first)
    else:
        module = getattr(nn, kind)(input_size, hidden, layers, bias=bias, batch_first=batch_first)
    features = input_size + feature_error
    if features < 1:
        features = 0
    x_shape = (steps, features) if unbatched else ((batch, steps, features) if batch_first else (steps, batch, features))
    x = in_layout(values(rng, x_shape, dtype), layout)
    state_shape = [layers] + ([] if unbatched else [batch]) + [hidden]
    if state_error == "layers":
        state_shape[0] += 1
    elif state_error == "batch" and not unbatched:
        state_shape[1] += 1
    elif state_error == "hidden":
        state_shape[-1] += 1
    state = None
    if give_state:
        h0 = rng.standard_normal(state_shape).astype(np.float32)
        state = (h0, rng.standard_normal(state_shape).astype(np.float32)) if kind == "LSTM" else h0

    dtype_ok = np.dtype(dtype) == np.float32
    state_ok = not give_state or state_error is None or (state_error == "batch" and unbatched)
    valid = dtype_ok and features == input_size and steps >= 1 and (unbatched or batch >= 1) and state_ok

    event("valid" if valid else "invalid")
    if not valid:
        expect_clean_error(lambda: module(x, state), dtype_ok)
        return
    y, out_state = module(x, state)
    x_tn = x[:, None, :] if unbatched else (x.transpose(1, 0, 2) if batch_first else x)
    ref_state = state
    if state is not None and unbatched:
        ref_state = tuple(s[:, None, :] for s in state) if kind == "LSTM" else state[:, None, :]
    y_ref, h_ref, c_ref = recurrent_reference(module, x_tn, ref_state)
    if unbatched:
        y_ref, h_ref = y_ref[:, 0], h_ref[:, 0]
        c_ref = None if c_ref is None else c_ref[:, 0]
    elif batch_first:
        y_ref = y_ref.transpose(1, 0, 2)
    close(y, y_ref, np.float32)
    if kind == "LSTM":
        close(out_state[0], h_ref, np.float32)
        close(out_state[1], c_ref, np.float32)
    else:
        close(out_state, h_ref, np.float32)
