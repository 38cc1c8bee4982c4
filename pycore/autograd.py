"""The tape: automatic backward for models that define only forward (define-by-run).

A Module subclass that defines `forward` and no `backward` (neither it nor any base class
between it and Module) is a *composite*. Called with gradients on, its forward is recorded:

    class Block(nn.Module):
        def forward(self, x):
            return self.relu(F.add(x, self.bn(self.conv(x))))

    y = block(x)              # Module.__call__ opens a Tape, runs forward, keeps the tape
    gx = block.backward(gy)   # the tape replayed newest call first

What a tape holds, in call order, one node per:
  - call of a module with its own backward (Conv2d, ReLU, Sequential, LSTM, a loss...): the
    module, the slots of its array arguments and outputs, and its backward state, taken off
    the module right after the call (`Module._take_backward_state`) and put back just
    before the node's backward (`_restore_backward_state`), so one module may be called
    several times in a forward (weight sharing, a reused ReLU);
  - call of a composite child: its own tape, replayed as one step of the parent's;
  - merge or shape op of pycore.functional.merge (add, cat, split, select...): a closure
    that maps the output gradients to the operands'.

Arrays are followed by identity: every float array a recorded call makes gets a *slot*
(the tape keeps the array, so its id is not reused while the tape lives), and the
gradients flowing backward are summed per slot (fan-out: an array read by several calls
gets the sum of their gradients). A call that hands back an array it was given gets a
new slot for it, so readers before and after that call are told apart.

Never a silent wrong gradient: inside a recorded forward, a float array that reaches a
module or an op and is neither an input of the composite, nor made by a recorded call,
nor marked constant (`F.constant`) was computed by plain numpy, and its gradient would be
lost: that raises a TypeError naming the layer and the fix. Integer arrays (indices,
lengths) carry no gradient and are not followed. Under pycore.no_grad() nothing is
recorded and a composite's call costs one flag test.
"""
import inspect
import numbers
import threading
from typing import Optional

import numpy as np

from ._context import is_grad_enabled

__all__ = ["is_recording"]


class _Recording(threading.local):
    """Per-thread recording state (class attributes are each new thread's defaults)."""

    tape: Optional["Tape"] = None  # the Tape that records this thread's module and op calls, or None
    savers: Optional[list] = None  # while a recorded module runs: the modules that saved backward state


_recording = _Recording()


def is_recording():
    """Whether a composite's forward is being recorded on this thread right now."""
    return _recording.tape is not None


def note_saver(module):
    """Called by Module._save_for_backward (and Sequential.forward): while a recorded
    module call runs, every module that keeps backward state is listed, so that the tape
    takes that state off each of them after the call."""
    savers = _recording.savers
    if savers is not None:
        savers.append(module)


def set_read_only(out):
    """Every array in out: an array, or a (nested) tuple of them (an RNN's (y, (h_n, c_n)))."""
    if type(out) is tuple:
        for item in out:
            set_read_only(item)
    elif isinstance(out, np.ndarray):
        out.setflags(write=False)  # (half the cost of .flags.writeable = False)


def _flat(args):
    """Whether no argument is a tuple or list (then args are their own leaves)."""
    for arg in args:
        if type(arg) in (tuple, list):
            return False
    return True


def _is_float_array(value):
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _is_scalar_value(value):
    """A float that a recorded call may produce (a loss's Python float, a numpy scalar)."""
    return isinstance(value, (float, np.floating))


def _leaves(structure, out):
    """Append every leaf of an array, or a nested tuple/list of them, to out (walk order)."""
    if type(structure) in (tuple, list):
        for item in structure:
            _leaves(item, out)
    else:
        out.append(structure)
    return out


def _rebuild(structure, values, position=None):
    """structure with its leaves replaced by values (in walk order)."""
    position = [0] if position is None else position
    if type(structure) in (tuple, list):
        return tuple(_rebuild(item, values, position) for item in structure)
    value = values[position[0]]
    position[0] += 1
    return value


def _grads_in_leaf_order(args, grads, who):
    """A backward's result, one entry per positional argument (a nested tuple for a tuple
    argument; a single value means the first argument's), as a flat list aligned with
    `_leaves(args)`; None where no gradient came back."""
    if type(grads) is not tuple:
        grads = (grads,)
    flat = []

    def walk(arg, grad):
        if type(arg) in (tuple, list):
            if grad is not None and type(grad) not in (tuple, list):
                raise TypeError(f"{who}: backward returned a {type(grad).__name__} for an argument that is a "
                                f"{type(arg).__name__} of {len(arg)}; expected a tuple of gradients like it")
            for i, item in enumerate(arg):
                walk(item, None if grad is None or i >= len(grad) else grad[i])
        else:
            flat.append(grad)

    for i, arg in enumerate(args):
        walk(arg, grads[i] if i < len(grads) else None)
    return flat


def zeros_for_missing(grads, outputs):
    """grads (a nested tuple like outputs) with each None under a float array output
    replaced by zeros of its shape: for a backward that takes every output's gradient."""
    if type(outputs) in (tuple, list):
        grads = (None,) * len(outputs) if grads is None else grads
        return tuple(zeros_for_missing(g, o) for g, o in zip(grads, outputs))
    if grads is None and isinstance(outputs, np.ndarray):
        return np.zeros_like(outputs)
    return grads


def _accumulate(grads, slot, grad):
    # a new array, never `+=`: a backward may hand back an array it still uses (Identity's).
    grads[slot] = grad if grads[slot] is None else grads[slot] + grad


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    return f"a {type(value).__name__}"


class _ModuleNode:
    """One call of a module with its own backward."""

    __slots__ = ("module", "args", "output", "holders", "inputs", "wanted", "outputs")

    def __init__(self, module, args, output, holders, inputs, wanted, outputs):
        self.module, self.args, self.output = module, args, output
        self.holders, self.inputs, self.wanted, self.outputs = holders, inputs, wanted, outputs

    def backward(self, output_grads, input_wanted):
        module = self.module
        for holder, state in self.holders:
            holder._restore_backward_state(state)
        self.holders = ()
        grad_output = _rebuild(self.output, output_grads) if type(self.output) is tuple else output_grads[0]
        if any(input_wanted):
            grads = module._backward_from_tape(grad_output, self.output)
            if type(grads) is not tuple and len(self.args) > 1:
                self._check_only_the_first_wanted(input_wanted)
        else:  # parameters only: the module skips its input gradient, as a network's first layer does
            wanted = module.requires_input_grad
            module.requires_input_grad = False
            try:
                grads = module._backward_from_tape(grad_output, self.output)
            finally:
                module.requires_input_grad = wanted
        if len(self.inputs) == 1 and type(grads) is not tuple and type(self.args[0]) is not tuple:
            return (grads,)  # the usual case: one array in, its gradient back
        return _grads_in_leaf_order(self.args, grads, f"{type(module).__name__}.backward")

    def _check_only_the_first_wanted(self, input_wanted):
        """A backward that returned one gradient gave none for the arguments after the first:
        an error when one of them needs a gradient (it would be dropped from the sum)."""
        first = len(_leaves(self.args[:1], []))
        leaves = _leaves(self.args, [])
        for position in range(first, len(leaves)):
            if input_wanted[position]:
                name = type(self.module).__name__
                raise RuntimeError(
                    f"{name}.backward returned the gradient of its first argument only, but "
                    f"{_describe(leaves[position])} passed after it needs one too (it comes from the model's "
                    f"inputs or parameters), and its gradient would be lost. Wrap it with F.constant(...) if it "
                    f"needs none (a loss's target), set "
                    f"requires_input_grad = False for a data input, or return one gradient per argument from "
                    f"{name}.backward.")


class _CompositeNode:
    """One call of a composite inside another composite's forward: its own tape."""

    __slots__ = ("tape", "inputs", "wanted", "outputs")

    def __init__(self, tape, inputs, wanted, outputs):
        self.tape, self.inputs, self.wanted, self.outputs = tape, inputs, wanted, outputs

    def backward(self, output_grads, input_wanted):
        return self.tape.replay(output_grads)


class _OpNode:
    """One call of a merge or shape op: backward(output_grads) -> one gradient per operand."""

    __slots__ = ("function", "inputs", "wanted", "outputs", "parameters")

    def __init__(self, function, inputs, wanted, outputs, parameters):
        self.function, self.inputs, self.wanted, self.outputs = function, inputs, wanted, outputs
        self.parameters = parameters

    def backward(self, output_grads, input_wanted):
        grads = self.function(output_grads)
        for index, param in self.parameters:  # a Parameter operand: its gradient goes into .grad
            buffer = param.grad_buffer()
            if buffer is not None and grads[index] is not None:
                buffer += grads[index]
        return grads


class Tape:
    """The calls of one composite forward; see the module docstring."""

    __slots__ = ("owner", "slot_of", "values", "wanted", "constants", "nodes", "input_slots", "output_slots",
                 "output", "args")

    def __init__(self, owner):
        self.owner = owner
        self.slot_of = {}  # id(array) -> slot
        self.values = []  # slot -> the array (held, so that its id stays unique while the tape lives)
        self.wanted = []  # slot -> whether a gradient is wanted for it
        self.constants = {}  # id(array) -> array marked constant (F.constant), also held
        self.nodes = []
        self.input_slots = []
        self.output_slots = []
        self.output = None
        self.args = ()

    # -- recording ------------------------------------------------------------------------
    def _new_slot(self, value, wanted):
        slot = len(self.values)
        self.values.append(value)
        self.wanted.append(wanted)
        self.slot_of[id(value)] = slot
        return slot

    def mark_constant(self, value):
        self.constants[id(value)] = value

    def _where(self, module):
        """'layer1.conv1' (Conv2d) for a module of the recorded composite."""
        for name, m in self.owner.named_modules():
            if m is module and name:
                return f"layer '{name}' ({type(module).__name__})"
        return f"a {type(module).__name__}"

    def _untracked(self, value, position, who):
        return TypeError(
            f"{type(self.owner).__name__}.forward: {who} received {_describe(value)} as {position} that was not made "
            f"by a recorded call: it was computed outside pycore's modules and ops (plain numpy, e.g. `x + y`, "
            f"`x[:, -1]`, `x.reshape(...)`), so its gradient would be silently lost. Use pycore.functional's ops "
            f"(F.add instead of +, F.mul instead of *, F.cat, F.select/F.narrow for slicing, F.reshape/F.flatten), "
            f"or wrap an array that needs no gradient with F.constant(x).")

    def slots_of(self, leaves, who, kind="argument"):
        """The slot of each leaf (None for integers, numbers and constants); TypeError naming
        `who` for a float array (or numpy float scalar) the tape does not know."""
        slots = []
        for position, value in enumerate(leaves):
            slot = self.slot_of.get(id(value))
            if slot is None and (_is_float_array(value) or isinstance(value, np.floating)) \
                    and id(value) not in self.constants:
                where = who if isinstance(who, str) else self._where(who)
                raise self._untracked(value, f"{kind} {position}", where)
            slots.append(slot)
        return slots

    def _outputs(self, output, wanted):
        """Slots for the float leaves of a recorded call's output (None for the others)."""
        slots = []
        for value in _leaves(output, []):
            is_value = _is_float_array(value) or _is_scalar_value(value)
            slots.append(self._new_slot(value, wanted) if is_value else None)
        return slots

    def _constant_outputs(self, output):
        for value in _leaves(output, []):
            if _is_float_array(value) or isinstance(value, np.floating):
                self.mark_constant(value)
        return output

    def call_module(self, module, args, kwargs):
        """Run `module(*args, **kwargs)` as one node (or, for a composite, one sub-tape)."""
        if not is_grad_enabled():  # a no_grad() block inside the forward: its outputs are constants
            _recording.tape = None
            try:
                return self._constant_outputs(module(*args, **kwargs))
            finally:
                _recording.tape = self
        if kwargs:
            args, kwargs = _positional_arrays(module, args, kwargs)
        inputs = self.slots_of(args if _flat(args) else _leaves(args, []), module)
        input_wanted = [slot is not None and self.wanted[slot] for slot in inputs]
        if module._auto_backward:
            child = record(module, args, kwargs, input_wanted)
            wanted = any(input_wanted) or _trains(module)
            node = _CompositeNode(child, inputs, input_wanted, self._outputs(child.output, wanted))
            self.nodes.append(node)
            return child.output
        savers: list = []
        _recording.tape, _recording.savers = None, savers
        try:
            output = module.forward(*args, **kwargs)
        finally:
            _recording.tape, _recording.savers = self, None
        # The called module itself and every module that saved state during the call (a
        # Sequential's children): dict.fromkeys keeps the order and drops repeats.
        holders: tuple
        if not savers or (len(savers) == 1 and savers[0] is module):
            holders = ((module, module._take_backward_state()),)
        else:
            holders = tuple((m, m._take_backward_state()) for m in dict.fromkeys((module, *savers)))
        wanted = any(input_wanted) or _trains(module)
        if isinstance(output, np.ndarray) and output.dtype.kind == "f":
            outputs = (self._new_slot(output, wanted),)
        else:
            outputs = self._outputs(output, wanted)
        self.nodes.append(_ModuleNode(module, args, output, holders, inputs, input_wanted, outputs))
        return output

    def call_op(self, function, operands, output, backward):
        """Record an op of pycore.functional.merge: `operands` (arrays, numbers, or
        Parameters: the op has checked that anything else is one) gave `output` (an array or
        a tuple of arrays); backward(output_grads) returns one gradient per operand.
        Returns output, read-only."""
        parameters: list = []
        leaves: list = []
        for index, operand in enumerate(operands):
            if isinstance(operand, (np.ndarray, numbers.Real)):
                leaves.append(operand)
            else:
                parameters.append((index, operand))
                leaves.append(None)
        if not is_grad_enabled():
            return self._constant_outputs(output)
        inputs = self.slots_of(leaves, f"F.{function}", kind="operand")
        set_read_only(output)
        input_wanted = [slot is not None and self.wanted[slot] for slot in inputs]
        trains = any(p.requires_grad for _, p in parameters)
        if not (any(input_wanted) or trains or any(slot is not None for slot in inputs)):
            return self._constant_outputs(output)  # constants only in, a constant out
        outputs = self._outputs(output, any(input_wanted) or trains)
        self.nodes.append(_OpNode(backward, inputs, input_wanted, outputs, parameters))
        return output

    # -- replaying ------------------------------------------------------------------------
    def replay(self, output_grads):
        """Gradients of the recorded inputs (one per input leaf, None where not wanted) from
        those of the outputs (one per output leaf, None for none)."""
        wanted = self.wanted
        grads = [None] * len(self.values)
        for slot, grad in zip(self.output_slots, output_grads):
            if slot is not None and grad is not None and wanted[slot]:
                _accumulate(grads, slot, grad)
        for node in reversed(self.nodes):
            out, reached = [], False
            for slot in node.outputs:
                grad = None if slot is None else grads[slot]
                if grad is not None:
                    reached = True
                    grads[slot] = None  # handed to the node; freed as soon as it is done
                out.append(grad)
            if not reached:
                if isinstance(node, _ModuleNode):
                    node.holders = ()  # no gradient reached it: its state is dropped
                continue
            in_grads = node.backward(out, node.wanted)
            for slot, want, grad in zip(node.inputs, node.wanted, in_grads):
                if want and grad is not None:
                    _accumulate(grads, slot, grad)
        self.nodes = []
        return [None if slot is None or not wanted[slot] else grads[slot] for slot in self.input_slots]


def _trains(module):
    """Whether the module has a parameter that wants a gradient (its node must run even
    when no gradient is wanted for its inputs)."""
    return any(p.requires_grad for p in module.parameters())


def _positional_arrays(module, args, kwargs):
    """(args, kwargs) with every keyword argument that holds a float array moved to its
    position (the backward's gradients are matched to positional arguments). Keyword
    arguments without arrays, the usual case, cost one scan."""
    if not kwargs or not any(_is_float_array(v) or type(v) in (tuple, list) for v in kwargs.values()):
        return args, kwargs
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    bound.apply_defaults()
    positional, keywords = [], {}
    for name, parameter in bound.signature.parameters.items():
        value = bound.arguments[name]
        if parameter.kind == parameter.VAR_POSITIONAL:
            positional.extend(value)
        elif parameter.kind == parameter.VAR_KEYWORD:
            keywords.update(value)
        elif parameter.kind == parameter.KEYWORD_ONLY:
            keywords[name] = value
        else:
            positional.append(value)
    return tuple(positional), keywords


def record(module, args, kwargs, input_wanted=None):
    """Run a composite's forward on a new tape and return the tape (its .output is the
    forward's output). input_wanted: per input leaf, whether its gradient is wanted (from
    the parent tape; at the top, module.requires_input_grad for all)."""
    args, kwargs = _positional_arrays(module, args, kwargs)
    tape = Tape(module)
    leaves = _leaves(args, [])
    if input_wanted is None:
        input_wanted = [module.requires_input_grad] * len(leaves)
    for value, wanted in zip(leaves, input_wanted):
        if _is_float_array(value) or _is_scalar_value(value):
            slot = tape.slot_of.get(id(value))  # the same array passed twice shares one slot
            if slot is None:
                slot = tape._new_slot(value, wanted)
            else:
                tape.wanted[slot] = tape.wanted[slot] or wanted
            tape.input_slots.append(slot)
        else:
            tape.input_slots.append(None)
    parent, parent_savers = _recording.tape, _recording.savers
    _recording.tape, _recording.savers = tape, None
    try:
        output = module.forward(*args, **kwargs)
    finally:
        _recording.tape, _recording.savers = parent, parent_savers
    tape.output_slots = tape.slots_of(_leaves(output, []), f"{type(module).__name__}.forward's return value",
                                      kind="output")
    tape.output, tape.args = output, args
    return tape


def backward(module, tape, grad_outputs):
    """A composite's backward: its tape replayed. grad_outputs as Module.backward got them."""
    name = type(module).__name__
    output = tape.output
    structured = type(output) in (tuple, list)
    if not grad_outputs:
        if structured or not (_is_scalar_value(output) or getattr(output, "shape", None) == ()):
            raise TypeError(f"{name}.backward: expected the gradient of the output ({_describe(output)}); only a "
                            f"scalar output (a loss) may omit it")
        grad_outputs = (1.0,)
    if structured and len(grad_outputs) == 1 and type(grad_outputs[0]) in (tuple, list):
        grad_outputs = tuple(grad_outputs[0])
    if not structured:
        if len(grad_outputs) != 1:
            raise TypeError(f"{name}.backward: forward returned one output, got {len(grad_outputs)} gradients")
        grad_outputs = grad_outputs[0]
    elif len(grad_outputs) != len(output):
        raise TypeError(f"{name}.backward: forward returned {len(output)} outputs, got {len(grad_outputs)} "
                        f"gradients (give None for an output without one)")
    out_leaves = _leaves(output, [])
    grad_leaves = _leaves(grad_outputs, []) if structured else [grad_outputs]
    if len(grad_leaves) != len(out_leaves):
        raise TypeError(f"{name}.backward: the gradients do not have the structure of forward's output")
    for i, (value, grad) in enumerate(zip(out_leaves, grad_leaves)):
        if grad is None or not isinstance(value, np.ndarray):
            continue
        if not isinstance(grad, (np.ndarray, numbers.Real)):
            raise TypeError(f"{name}.backward: gradient {i}: expected an array, got {type(grad).__name__}")
        grad_shape = np.shape(grad)  # type: ignore[arg-type]
        if grad_shape != value.shape:
            raise ValueError(f"{name}.backward: gradient {i} has shape {grad_shape}, expected the output's "
                             f"{value.shape}")
    input_grads = tape.replay(grad_leaves)
    if not module.requires_input_grad:
        return None
    grads = _rebuild(tape.args, input_grads)
    return grads[0] if len(grads) == 1 else grads
