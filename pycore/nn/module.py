"""Module, Parameter and the containers: the contract every layer follows.

    y = m(x)            forward; caches what backward needs (unless under pycore.no_grad())
    gx = m.backward(gy) gradient of the input; *adds* each parameter's gradient into .grad

A subclass that defines only forward (a composite model) gets its backward from the tape
(pycore/autograd.py): its calls are recorded during forward and replayed by backward.

Layers hold numpy arrays. Parameters and sub-modules are found by walking the
instance's attributes in the order they were set, so their names are PyTorch's
("conv1.weight", "0.bias", ...) and a PyTorch state_dict converted with
`{k: v.numpy() for k, v in sd.items()}` loads directly.
"""
from __future__ import annotations

__all__ = ["Module", "Parameter", "Sequential", "StateDictError", "IncompatibleKeys"]

import functools
from collections import OrderedDict, namedtuple
from collections.abc import Iterator, Mapping
from typing import Any, Callable, TypeVar, cast, overload

import numpy as np
from numpy.typing import DTypeLike

from .. import _context, autograd
from .._checks import float_array, float_dtype
from .._context import is_grad_enabled
from ..memory import enter as memory_enter
from ..memory import leave as memory_leave


class Parameter:
    """A trainable array: `.data` (the values) and `.grad` (same shape, starts at zeros).

    Args:
        data (array-like): the initial values, stored as a C-contiguous numpy array (no copy
            when `data` already is one, so the caller's array is the parameter's).
        requires_grad (bool, default True): False makes a frozen parameter (below).

    Backward passes add into `.grad`; `Module.zero_grad()` (or the optimizer's) resets it.
    `.grad = None` (PyTorch's set_to_none) is allowed everywhere: the next backward that
    reaches the parameter creates the gradient (grad_buffer), and the optimizers skip a
    parameter whose gradient is still None.

    `requires_grad = False` freezes it (PyTorch's name): `.grad` becomes None, backward
    computes no gradient for it (grad_buffer returns None, which every backward takes as
    "skip this one") and the optimizers leave it unchanged. Set back to True, the next
    backward starts its gradient again from zeros.
    """

    __slots__ = ("data", "grad", "_requires_grad")
    data: np.ndarray
    grad: np.ndarray | None

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        self.data = np.ascontiguousarray(data)
        self._requires_grad = bool(requires_grad)
        self.grad = np.zeros_like(self.data) if self._requires_grad else None

    @property
    def requires_grad(self) -> bool:
        """Whether backward computes a gradient for this parameter (True or False)."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"requires_grad: expected True or False, got {type(value).__name__}")
        self._requires_grad = bool(value)
        if not value:
            self.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Set requires_grad in place and return the parameter (PyTorch's spelling).

        Args:
            requires_grad (bool, default True): False freezes the parameter, True unfreezes it.

        Returns:
            Parameter: this parameter.
        """
        self.requires_grad = requires_grad
        return self

    def grad_buffer(self) -> np.ndarray | None:
        """The array every backward adds this parameter's gradient into.

        The one place that rule lives; a backward never reads `.grad` directly.

        Returns:
            np.ndarray or None: `.grad`, created as zeros first when it is None; None when
            the parameter is frozen (requires_grad=False), which every backward takes as
            "no gradient wanted".
        """
        if not self._requires_grad:
            return None
        if self.grad is None:
            self.grad = np.zeros_like(self.data)
        return self.grad

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of `.data`."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The dtype of `.data`."""
        return self.data.dtype

    @property
    def size(self) -> int:
        """The number of values in `.data`."""
        return self.data.size

    def __repr__(self) -> str:
        frozen = "" if self._requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"


def _refuse_plain_container(owner: str, name: str, value: Any) -> None:
    """TypeError when a list, tuple or dict assigned to a module attribute holds Modules or
    Parameters: they would not be registered (PyTorch silently ignores them too)."""
    items = value.values() if isinstance(value, dict) else value
    held = next((v for v in items if isinstance(v, (Module, Parameter))), None)
    if held is None:
        return
    kind = "Module" if isinstance(held, Module) else "Parameter"
    fix = ("nn.ModuleDict" if isinstance(value, dict) else "nn.ModuleList") if kind == "Module" else (
        "one attribute per Parameter")
    raise TypeError(f"{owner}.{name}: a plain {type(value).__name__} of {kind}s is not registered, so its "
                    f"parameters would be missing from parameters(), state_dict() and the optimizer; "
                    f"use {fix} instead")


class StateDictError(RuntimeError, ValueError):
    """load_state_dict found missing, unexpected or wrongly shaped entries.

    A RuntimeError, as PyTorch raises, and a ValueError, as pycore raises for bad values."""


# (collections' namedtuple, not a typing.NamedTuple class: Sphinx hands the latter's
# NamedTuple base, a function, to docs/_ext's autodoc-process-bases hook, which fails on it)
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = """What `Module.load_state_dict` returns: the keys it did not find and those it
did not use (a named tuple, as PyTorch's).

Args:
    missing_keys (list of str): the model's keys absent from the state_dict.
    unexpected_keys (list of str): the state_dict's keys that the model does not have.
"""


def _nonfinite(value: Any) -> tuple[int, int]:
    """(count, total) of non-finite floats in an array or a nest of tuples/lists of arrays."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        bad = value.size - int(np.count_nonzero(np.isfinite(value)))
        return bad, value.size
    if isinstance(value, (tuple, list)):
        counts = [_nonfinite(v) for v in value]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)
    return 0, 0


_Method = TypeVar("_Method", bound=Callable[..., Any])
_ModuleT = TypeVar("_ModuleT", bound="Module")  # methods that return self keep the caller's class


def _anomaly_checked(method: _Method, phase: str) -> _Method:
    """Wrap a subclass's forward/backward so that it allocates from pycore's memory pool
    and, in debug mode (pycore.set_debug), a NaN or Inf it produces raises at once, naming
    the layer. Outside debug mode the wrapper costs a flag test and two ~50 ns C calls."""

    @functools.wraps(method)  # name, docstring, annotations; __wrapped__: inspect.signature sees method's
    def checked(self: Module, *args: Any, **kwargs: Any) -> Any:
        # The arrays this call creates come from pycore's pool (pycore/memory.py);
        # token is None when an enclosing call (a Sequential) has already switched.
        token = memory_enter()
        try:
            if not _context.is_debug():
                return method(self, *args, **kwargs)
            return debug_checked(self, *args, **kwargs)
        finally:
            memory_leave(token)

    def debug_checked(self: Module, *args: Any, **kwargs: Any) -> Any:
        self._name_descendants()
        out = method(self, *args, **kwargs)
        bad, total = _nonfinite(out)
        what = "output" if phase == "forward" else "input gradient"
        if not bad and phase == "backward":
            for pname, param in vars(self).items():
                if isinstance(param, Parameter):
                    bad, total = _nonfinite(param.grad)
                    if bad:
                        what = f"gradient of {pname}"
                        break
        if bad:
            raise FloatingPointError(
                f"pycore debug mode: layer {self._debug_name()} produced NaN/Inf in its {phase} "
                f"{what} ({bad} of {total} values)")
        return out

    checked.__dict__["_anomaly_checked"] = True  # __init_subclass__ wraps each method once
    return cast(_Method, checked)  # takes and returns what method does


def _checked_as(phase: str) -> Callable[[_Method], _Method]:
    """_anomaly_checked as a decorator, for Module's own backward."""
    return lambda method: _anomaly_checked(method, phase)


def _read_only_when_saved(out: Any, inputs: tuple[Any, ...]) -> Any:
    """A layer's output, made read-only while gradients are on (outside pycore.no_grad()).

    The next layer keeps it for its backward (Linear its input, ReLU/Sigmoid/Softmax their
    own output): an in-place edit (`y += 1`) before backward would give a silently wrong
    gradient, so it raises numpy's "assignment destination is read-only" at once (an RNN's
    final state too: the next chunk of truncated BPTT keeps it as its h_0). One flag per
    output, no copy; `.copy()` gives a writeable array. Under no_grad() nothing
    is kept and outputs stay writeable. A module that hands back one of its inputs itself
    (`return x`) leaves it alone: the caller's own array is not frozen.
    """
    if is_grad_enabled() and not any(out is x for x in inputs):
        autograd.set_read_only(out)
    return out


class Module:
    """Base class of every layer and model.

    Subclasses call `super().__init__()` and implement `forward(x)` and `backward(grad)`,
    or only `forward`, made of pycore modules and pycore.functional ops: backward then
    comes from the calls recorded during forward (pycore/autograd.py; a *composite*).
    Set `requires_input_grad = False` on a model's first layer (or on a Sequential) to
    skip the gradient of the input, which a network's data never needs: backward then
    returns None. pycore.train.fit does this for you.

    Args:
        dtype (np.float32 or np.float64, default np.float32): the dtype of the parameters a
            subclass creates (`self.dtype`); `to()` changes it later.

    Attributes:
        training (bool): True in training mode (the default), False after `eval()`.
        requires_input_grad (bool): whether backward computes the input's gradient.
        dtype (np.dtype): the module's float dtype.
    """

    # True for a composite: no class between it and Module defines backward (set per class).
    _auto_backward = False
    training: bool
    requires_input_grad: bool
    dtype: np.dtype

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for phase in ("forward", "backward"):
            method = cls.__dict__.get(phase)
            if method is not None and not getattr(method, "_anomaly_checked", False):
                setattr(cls, phase, _anomaly_checked(method, phase))
        below_module = cls.__mro__[:cls.__mro__.index(Module)]
        cls._auto_backward = not any("backward" in c.__dict__ for c in below_module)

    def _debug_name(self) -> str:
        return self.__dict__.get("_path_name") or type(self).__name__

    def _name_descendants(self) -> None:
        """Record each sub-module's path ("features.3") for debug-mode messages; the
        outermost module called names them first, so paths are full."""
        if "_path_name" not in self.__dict__:
            self.__dict__["_path_name"] = type(self).__name__
        for name, m in self.named_modules():
            if name:
                m.__dict__.setdefault("_path_name", f"'{name}' ({type(m).__name__})")

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        self.training = True
        self.requires_input_grad = True
        self.dtype = float_dtype(dtype)
        self._buffer_names: list[str] = []
        self._saved: tuple[Any, ...] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        # A plain list/tuple/dict of layers would be invisible to parameters(), state_dict()
        # and the optimizer (0 parameters, never trained), so it is refused here, naming
        # the container that registers them. Only containers are looked into: ~0.1 us for
        # the type test on every other attribute.
        if type(value) in (list, tuple, dict):
            _refuse_plain_container(type(self).__name__, name, value)
        object.__setattr__(self, name, value)

    # -- running -----------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tape = autograd._recording.tape
        if tape is not None:  # inside a composite's recorded forward: one node of its tape
            return _read_only_when_saved(tape.call_module(self, args, kwargs), args)
        if self._auto_backward and is_grad_enabled():  # a composite: record its forward
            tape = autograd.record(self, args, kwargs)
            self._save_for_backward(tape)
            return _read_only_when_saved(tape.output, args)
        return _read_only_when_saved(self.forward(*args, **kwargs), args)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The layer's computation; every subclass defines it. Call the module (m(x)), not
        forward: the call adds the memory pool, debug checks and, for a composite, the tape.

        Args:
            *args, **kwargs: the subclass's inputs.

        Returns:
            The subclass's output(s).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    @_checked_as("backward")  # the composite's backward allocates from the pool and is checked like every other
    def backward(self, *grad_outputs: Any) -> Any:
        """A composite's backward (a subclass that defines only forward): the calls its
        last forward recorded, replayed newest first.

        Args:
            *grad_outputs: the gradient of the output, one per output when forward returned
                a tuple (None for an unused one), or nothing for a scalar output (a loss: 1.0).

        Returns:
            The input's gradient, a tuple of them for several inputs, or None when
            requires_input_grad is False. Every parameter's gradient is added into its .grad.
        """
        if not self._auto_backward:
            raise NotImplementedError(f"{type(self).__name__} does not define backward")
        (tape,) = self._pop_saved()
        return autograd.backward(self, tape, grad_outputs)

    # -- backward state, as the tape (pycore/autograd.py) moves it ----------------------
    def _take_backward_state(self) -> Any:
        """Remove and return what the last forward kept for backward. The tape calls it after
        each recorded call, on the module called and on every module that saved state during
        the call (a Sequential's children), and gives the value back to
        `_restore_backward_state` just before that call's backward: so one module may be
        called several times in a forward. A module that keeps backward state anywhere but
        `_save_for_backward` overrides both (the RNN cells' stack)."""
        saved = self.__dict__.get("_saved")
        self.__dict__["_saved"] = None
        return saved

    def _restore_backward_state(self, state: Any) -> None:
        self.__dict__["_saved"] = state

    def _backward_from_tape(self, grad_output: Any, output: Any) -> Any:
        """Backward of one recorded call. grad_output has output's structure (None for an
        output no gradient reached). Returns the input gradients: one value for the first
        argument, or a tuple with one entry per positional argument. Overridden where
        backward's signature differs (nn.LSTM: backward(grad_y, grad_state) and the
        initial state's gradient in an attribute)."""
        if type(output) is tuple:
            return self.backward(*autograd.zeros_for_missing(grad_output, output))
        return self.backward(grad_output)

    def _check_input(self, x: Any, name: str = "input", ndim: int | tuple[int, ...] | None = None,
                     layout: str | None = None) -> np.ndarray:
        """x as a C-contiguous float array; TypeError/ValueError naming the layer.

        A layer with weights of its own demands its dtype (no silent casts); one without
        (ReLU, MaxPool2d, Dropout, Flatten...) takes float32 and float64 alike, as PyTorch's do.
        """
        try:
            return float_array(x, name, dtype=self.dtype if self._owns_weights() else None, ndim=ndim,
                               layout=layout)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{type(self).__name__}: {err}") from None

    def _owns_weights(self) -> bool:
        """Whether this layer has parameters or buffers of its own. Scanning the attributes
        costs ~2 us a call, so the answer is kept and rescanned only when the number of
        attributes changes (a parameter added or removed after construction)."""
        attributes = self.__dict__
        cached = attributes.get("_owns_weights_cache")
        if cached is None or cached[0] != len(attributes):
            owns = any(isinstance(v, Parameter) for v in attributes.values()) or bool(self._buffer_names)
            cached = (len(attributes) + (cached is None), owns)  # + the cache entry itself
            attributes["_owns_weights_cache"] = cached
        return cached[1]

    def _save_for_backward(self, *values: Any) -> None:
        """Keep what backward needs, unless gradients are off (pycore.no_grad())."""
        # (through __dict__: skips __setattr__'s container check, ~0.3 us on every forward)
        self.__dict__["_saved"] = values if is_grad_enabled() else None
        savers = autograd._recording.savers  # (autograd.note_saver, inlined: every forward passes here)
        if savers is not None:
            savers.append(self)

    def _pop_saved(self) -> tuple[Any, ...]:
        """What forward saved; RuntimeError when there is nothing (no forward, or a second backward)."""
        saved = self._saved
        if saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no forward to differentiate. Call forward first "
                "(outside pycore.no_grad()); each forward supports one backward.")
        self.__dict__["_saved"] = None
        return saved

    # -- parameters, buffers, children -------------------------------------------
    def register_buffer(self, name: str, value: Any) -> None:
        """Add a non-trainable array that belongs in the state_dict (e.g. BatchNorm's running
        mean), as the attribute `name`.

        Args:
            name (str): the attribute and state_dict key.
            value (np.ndarray or None): the array (None: a buffer that is not there yet).
        """
        setattr(self, name, value)
        if name not in self._buffer_names:
            self._buffer_names.append(name)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules, in the order they were set.

        Returns:
            An iterator of (attribute name, Module) pairs.
        """
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, in the order they were set.

        Returns:
            An iterator of Modules.
        """
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and every module below it, depth first, parents before children.

        Args:
            prefix (str, default ""): prepended to every name (this module's own is `prefix`).

        Returns:
            An iterator of (dotted name, Module) pairs, PyTorch's names ("features.0").
        """
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(prefix + ("." if prefix else "") + name)

    def modules(self) -> Iterator[Module]:
        """This module and every module below it, as named_modules() orders them.

        Returns:
            An iterator of Modules.
        """
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = "", remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """Every parameter of this module and its sub-modules, in PyTorch's order.

        A Parameter shared by several attributes (tied weights: `head.weight = emb.weight`)
        comes once, under its first name, as in PyTorch, so that optimizers and
        clip_grad_norm_ see it once; state_dict() still has every name.

        Args:
            prefix (str, default ""): prepended to every name.
            remove_duplicate (bool, default True): False lists a shared Parameter under
                every name.

        Returns:
            An iterator of (dotted name, Parameter) pairs ("conv1.weight", "0.bias", ...).
        """
        seen = set()
        for name, param in self._every_named_parameter(prefix):
            if remove_duplicate:
                if id(param) in seen:
                    continue
                seen.add(id(param))
            yield name, param

    def _every_named_parameter(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            full = prefix + name
            if isinstance(value, Parameter):
                yield full, value
            elif isinstance(value, Module):
                yield from value._every_named_parameter(full + ".")

    def parameters(self) -> list[Parameter]:
        """Every parameter, once each, in named_parameters()' order (what an optimizer takes).

        Returns:
            list of Parameter: a new list (unlike PyTorch's iterator, it can be read twice).
        """
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Every buffer (register_buffer) of this module, then of its sub-modules.

        Args:
            prefix (str, default ""): prepended to every name.

        Returns:
            An iterator of (dotted name, array) pairs ("bn1.running_mean", ...); the value is
            None for a buffer registered as None.
        """
        for name in self._buffer_names:
            yield prefix + name, getattr(self, name)
        for name, child in self.named_children():
            yield from child.named_buffers(prefix + name + ".")

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Reset every parameter's gradient.

        Args:
            set_to_none (bool, default False): False fills each `.grad` with zeros in place
                (pycore's backward adds into the same buffers every step, with no
                allocation); True sets it to None, as PyTorch's default does (the next
                backward recreates it).
        """
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.fill(0)

    def train(self: _ModuleT, mode: bool = True) -> _ModuleT:
        """Set training mode on this module and every sub-module (Dropout drops, BatchNorm
        uses and updates batch statistics).

        Args:
            mode (bool, default True): True for training mode, False for evaluation mode.

        Returns:
            Module: this module.
        """
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self: _ModuleT) -> _ModuleT:
        """Set evaluation mode on this module and every sub-module: `train(False)`.

        Returns:
            Module: this module.
        """
        return self.train(False)

    def to(self: _ModuleT, dtype: DTypeLike) -> _ModuleT:
        """Cast every parameter (values and grads) and floating buffer to `dtype`, in place.

        Unlike PyTorch's `to`, it takes a dtype only (there is one device). The Parameters
        stay the same objects; their `.data` and `.grad` become new arrays of `dtype`.

        Args:
            dtype (np.float32 or np.float64): the new dtype, also set as every module's `.dtype`.

        Returns:
            Module: this module.
        """
        new_dtype = float_dtype(dtype)
        for m in self.modules():
            m.dtype = new_dtype
            for value in vars(m).values():
                if isinstance(value, Parameter) and value.data.dtype != new_dtype:
                    value.data = value.data.astype(new_dtype)
                    value.grad = None if value.grad is None else value.grad.astype(new_dtype)
            for name in m._buffer_names:
                buf = getattr(m, name)
                if isinstance(buf, np.ndarray) and buf.dtype.kind == "f":
                    setattr(m, name, buf.astype(new_dtype))
        return self

    def num_parameters(self) -> int:
        """The number of trainable and frozen values, a shared Parameter counted once.

        Returns:
            int: the sum of every parameter's size.
        """
        return sum(p.size for p in self.parameters())

    def apply(self: _ModuleT, fn: Callable[[Module], Any]) -> _ModuleT:
        """Call fn(module) on every sub-module, children first, then on this one (PyTorch's
        order). E.g. `model.apply(init_weights)`.

        Args:
            fn (callable): takes a Module; its result is ignored.

        Returns:
            Module: this module.
        """
        if not callable(fn):
            raise TypeError(f"apply: expected a callable, got {type(fn).__name__}")
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def requires_grad_(self: _ModuleT, requires_grad: bool = True) -> _ModuleT:
        """Freeze (False) or unfreeze (True) every parameter. Frozen parameters get no
        gradient (.grad is None) and the optimizers leave them unchanged.

        Args:
            requires_grad (bool, default True): set on every parameter.

        Returns:
            Module: this module.
        """
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def summary(self, example_input: Any, print_fn: Callable[[str], Any] | None = print) -> str:
        """Print (and return as a string) a table of every sub-module: its name, type,
        output shape for `example_input` and parameter count, then the totals.

        The example runs once in eval mode under pycore.no_grad() (BatchNorm's running
        statistics and the training flags are left as they were), unfused (Sequential's
        layer + activation fusion is off in debug mode, so each layer reports its own
        output). Only leaf modules and their shapes are listed, in the order they ran.

        Args:
            example_input: what the model's forward takes (an array, e.g. one batch).
            print_fn (callable or None, default print): called with the table; None prints nothing.

        Returns:
            str: the table.
        """
        rows: list[tuple[str, str, str, int]] = []
        leaves = [(name, m) for name, m in self.named_modules() if not any(True for _ in m.children())]
        originals = {}

        def recording(name: str, module: Module, forward: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any, **kwargs: Any) -> Any:
                out = forward(*args, **kwargs)
                rows.append((name or type(module).__name__, type(module).__name__, _shapes(out),
                             sum(p.size for p in vars(module).values() if isinstance(p, Parameter))))
                return out
            return run

        modes = [(m, m.training) for m in self.modules()]
        was_debug = _context.is_debug()
        try:
            for name, m in leaves:
                originals[id(m)] = m
                m.__dict__["forward"] = recording(name, m, m.forward)
            self.eval()
            _context.set_debug(True)
            with _context.no_grad():
                self(example_input)
        finally:
            _context.set_debug(was_debug)
            for m in originals.values():
                m.__dict__.pop("forward", None)
            for m, mode in modes:
                m.training = mode
        total = Module.num_parameters(self)  # not self.num_parameters: PReLU's attribute of that name hides it
        trainable = sum(p.size for p in self.parameters() if p.requires_grad)
        width = max([len("Layer (type)")] + [len(r[0]) + len(r[1]) + 3 for r in rows])
        shape_width = max([len("Output shape")] + [len(r[2]) for r in rows])
        rule = "-" * (width + shape_width + 14)
        lines = [f"{'Layer (type)':<{width}}  {'Output shape':<{shape_width}}  {'Param #':>10}", rule]
        for name, kind, shape, count in rows:
            lines.append(f"{name + ' (' + kind + ')':<{width}}  {shape:<{shape_width}}  {count:>10,}")
        lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    # -- state dict ----------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, Any]:
        """Every parameter's and buffer's array under PyTorch's keys.

        Returns:
            OrderedDict of str -> np.ndarray: the live arrays, not copies ("conv1.weight",
            "bn1.running_mean", ...; a shared Parameter under each of its names).
        """
        out: OrderedDict[str, Any] = OrderedDict()
        self._collect_state(out, "")
        return out

    def _collect_state(self, out: OrderedDict[str, Any], prefix: str) -> None:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                out[prefix + name] = value.data
            elif isinstance(value, Module):
                value._collect_state(out, prefix + name + ".")
        for name in self._buffer_names:
            out[prefix + name] = getattr(self, name)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy arrays into this module's parameters and buffers, cast to their dtype.

        Nothing is changed unless the whole dict is valid: the arrays are written in place
        (the same objects stay in the model and its optimizer), only after every entry has
        been checked.

        Args:
            state_dict (mapping of str -> array): values may be numpy arrays or anything
                np.asarray accepts (a CPU torch tensor).
            strict (bool, default True): every key must match and nothing may be left over.
                False loads the keys both have and reports the others.

        Returns:
            IncompatibleKeys: (missing_keys, unexpected_keys).

        Raises:
            StateDictError: a shape mismatch, a non-numeric value or a read-only target, and
                with strict=True a missing or unexpected key; all problems in one message.
            TypeError: state_dict is not a mapping.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict: expected a mapping of name -> array, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        problems, updates = [], []
        for key, (owner, attr, is_param) in targets.items():
            if key not in state_dict:
                continue
            current = owner.data if is_param else getattr(owner, attr)
            try:
                value = np.asarray(state_dict[key])
            except Exception as err:  # noqa: BLE001 - reported with the key
                problems.append(f"{key}: cannot convert to an array ({err})")
                continue
            if value.dtype == object or value.dtype.kind not in "fiub":
                problems.append(f"{key}: expected a numeric array, got dtype {value.dtype}")
                continue
            if value.shape != current.shape:
                problems.append(f"size mismatch for {key}: the checkpoint has shape {value.shape}, "
                                f"the model has shape {current.shape}")
                continue
            if not current.flags.writeable:  # found now, not after the layers before it were written
                problems.append(f"{key}: the model's array is read-only (make it writeable, or assign a new "
                                "array, before loading)")
                continue
            updates.append((owner, attr, is_param, value.astype(current.dtype)))
        if strict:
            problems += [f"missing key: {k}" for k in missing] + [f"unexpected key: {k}" for k in unexpected]
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n  "
                                 + "\n  ".join(problems))
        for owner, attr, is_param, value in updates:
            if is_param:
                owner.data[...] = value
            else:
                getattr(owner, attr)[...] = value
        return IncompatibleKeys(missing, unexpected)

    def _state_targets(self, prefix: str = "", out: OrderedDict[str, tuple[Any, str, bool]] | None = None,
                       ) -> OrderedDict[str, tuple[Any, str, bool]]:
        out = OrderedDict() if out is None else out
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                out[prefix + name] = (value, name, True)
            elif isinstance(value, Module):
                value._state_targets(prefix + name + ".", out)
        for name in self._buffer_names:
            out[prefix + name] = (self, name, False)
        return out

    # -- printing ------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside this module's repr parentheses; layers override it.

        Returns:
            str: the layer's arguments, e.g. "in_features=3, out_features=2, bias=True"
            for a Linear; "" for a module that defines none.
        """
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines) + "\n)"


def _shapes(out: Any) -> str:
    """An output's shape as text: (2, 10), or a tuple of them for several outputs."""
    if isinstance(out, np.ndarray):
        return str(tuple(out.shape))
    if isinstance(out, (tuple, list)):
        return "(" + ", ".join(_shapes(o) for o in out) + ")"
    return type(out).__name__


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse. Children are named
    "0", "1", ... so state_dict keys match torch.nn.Sequential's.

    A Conv2d or Linear followed by ReLU, LeakyReLU (negative_slope >= 0), Tanh or Sigmoid
    runs as one fused step (and ReLU + MaxPool2d as one pass), except in debug mode: the
    same results, fewer passes over memory (nn/fusion.py). `requires_input_grad` is the
    first layer's.

    Args:
        *modules (Module): the layers, in order. The Sequential takes the first one's dtype.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)
        if modules:
            self.dtype = modules[0].dtype

    def __len__(self) -> int:
        return sum(1 for _ in self.named_children())

    @overload
    def __getitem__(self, index: int) -> Module: ...
    @overload
    def __getitem__(self, index: slice) -> list[Module]: ...

    def __getitem__(self, index: int | slice) -> Module | list[Module]:
        layers = list(self.children())
        return layers[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self.children()))

    @property  # Module's plain attribute, here the first layer's
    def requires_input_grad(self) -> bool:
        first = next(iter(self.children()), None)
        return True if first is None else first.requires_input_grad

    @requires_input_grad.setter
    def requires_input_grad(self, value: bool) -> None:
        first = next(iter(self.children()), None)
        if first is not None:
            first.requires_input_grad = value

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_fusion_plan", None)  # a child may have been added or replaced
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop("_fusion_plan", None)
        super().__delattr__(name)

    def _steps(self) -> list[Any]:
        """The children as nn/fusion.py runs them (a layer + activation pair as one fused
        step), planned again after an attribute changes or debug mode is switched."""
        from . import fusion  # fusion imports the layer modules, which import this one

        debug = _context.is_debug()
        cached = self.__dict__.get("_fusion_plan")
        if cached is None or cached[0] != debug:
            cached = (debug, fusion.plan(list(self.children())))
            self.__dict__["_fusion_plan"] = cached
        return cached[1]

    def forward(self, x: Any) -> Any:
        """x through every layer in order (fused steps, such as Conv2d + ReLU, run as one).

        Args:
            x: the first layer's input.

        Returns:
            The last layer's output.
        """
        steps = self._steps()
        for step in steps:
            x = step(x)
        self.__dict__["_last_steps"] = steps  # backward runs the steps this forward took
        autograd.note_saver(self)
        return x

    def _take_backward_state(self) -> Any:
        # The steps this forward took (the fusion plan may change between calls); every
        # step keeps its state in its modules' ctx (nn/fusion.py), taken from each of them.
        return super()._take_backward_state(), self.__dict__.get("_last_steps")

    def _restore_backward_state(self, state: Any) -> None:
        saved, steps = state
        super()._restore_backward_state(saved)
        self.__dict__["_last_steps"] = steps

    def backward(self, grad: Any) -> Any:
        """grad through every layer's backward in reverse order.

        Args:
            grad: the gradient of the output (the last layer's backward argument).

        Returns:
            The input's gradient, or None when the first layer's requires_input_grad is False
            (the layers' parameter gradients are added into their .grad either way).
        """
        steps = self.__dict__.get("_last_steps")
        if steps is None:
            steps = self._steps()
        for step in reversed(steps):
            grad = step.backward(grad)
            if grad is None:
                break
        return grad
