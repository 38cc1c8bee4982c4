"""ModuleList, ModuleDict and Identity: PyTorch's containers, registering what they hold.

A module's parameters are found by walking its attributes (nn/module.py), so a container
stores each module it holds as an attribute named as PyTorch names it: "0", "1", ... for
ModuleList, the key for ModuleDict. state_dict keys are then torch's ("blocks.0.weight",
"heads.cls.bias"). Neither defines forward: the owning model iterates over them, as in
PyTorch. A plain list/tuple/dict of modules set as an attribute raises a TypeError
(Module.__setattr__) that points here.
"""
__all__ = ["ModuleList", "ModuleDict", "Identity"]
import operator

from .module import Module


def _module(value, where):
    if not isinstance(value, Module):
        raise TypeError(f"{where}: expected a Module, got {type(value).__name__}")
    return value


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ...: indexing, len, iteration,
    append, extend, insert, slicing (a new ModuleList), item assignment and deletion (the
    names are renumbered as PyTorch does)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _items(self):
        return list(self.children())

    def _reset(self, items):
        for name, _ in list(self.named_children()):
            delattr(self, name)
        for i, m in enumerate(items):
            setattr(self, str(i), m)

    def _index(self, index, size):
        index = operator.index(index)
        if not -size <= index < size:
            raise IndexError(f"ModuleList: index {index} is out of range for {size} modules")
        return index % size

    def __len__(self):
        return len(self._items())

    def __iter__(self):
        return iter(self._items())

    def __getitem__(self, index):
        items = self._items()
        if isinstance(index, slice):
            return ModuleList(items[index])
        return items[self._index(index, len(items))]

    def __setitem__(self, index, module):
        items = self._items()
        setattr(self, str(self._index(index, len(items))), _module(module, "ModuleList[index] = value"))

    def __delitem__(self, index):
        items = self._items()
        if isinstance(index, slice):
            del items[index]
        else:
            del items[self._index(index, len(items))]
        self._reset(items)

    def append(self, module):
        setattr(self, str(len(self)), _module(module, "ModuleList.append"))
        return self

    def extend(self, modules):
        if isinstance(modules, Module) or not hasattr(modules, "__iter__"):
            raise TypeError(f"ModuleList.extend: expected an iterable of Modules, got {type(modules).__name__}")
        modules = list(modules)
        for i, m in enumerate(modules):
            _module(m, f"ModuleList: item {i}")
        start = len(self)
        for i, m in enumerate(modules):
            setattr(self, str(start + i), m)
        return self

    def insert(self, index, module):
        _module(module, "ModuleList.insert")
        items = self._items()
        items.insert(operator.index(index), module)
        self._reset(items)


class ModuleDict(Module):
    """An ordered dict of modules, each registered as a child under its key: [key], keys,
    values, items, len, iteration over the keys, `in`, update and pop. Keys are strings
    without "." that are not already attributes of a module ("training", "forward"...),
    as PyTorch requires."""

    def __init__(self, modules=None):
        super().__init__()
        self.__dict__["_keys"] = []
        if modules is not None:
            self.update(modules)

    def _check_key(self, key):
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be strings, got {type(key).__name__}")
        if not key or "." in key:
            raise KeyError(f"ModuleDict: key {key!r} must be a non-empty string without '.'")
        if key not in self._keys and hasattr(self, key):
            raise KeyError(f"ModuleDict: key {key!r} is already an attribute of a module; choose another name")
        return key

    def __getitem__(self, key):
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key, module):
        self._check_key(key)
        _module(module, f"ModuleDict[{key!r}]")
        if key not in self._keys:
            self._keys.append(key)
        setattr(self, key, module)

    def __delitem__(self, key):
        if key not in self._keys:
            raise KeyError(key)
        self._keys.remove(key)
        delattr(self, key)

    def pop(self, key):
        module = self[key]
        del self[key]
        return module

    def __len__(self):
        return len(self._keys)

    def __iter__(self):
        return iter(list(self._keys))

    def __contains__(self, key):
        return key in self._keys

    def keys(self):
        return list(self._keys)

    def values(self):
        return [getattr(self, k) for k in self._keys]

    def items(self):
        return [(k, getattr(self, k)) for k in self._keys]

    def update(self, modules):
        """Add (or replace) entries from a mapping or an iterable of (key, module) pairs."""
        pairs = list(modules.items()) if hasattr(modules, "items") else list(modules)
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise TypeError(f"ModuleDict.update: entry {i} is not a (key, module) pair")
            self._check_key(pair[0])
            _module(pair[1], f"ModuleDict[{pair[0]!r}]")
        for key, module in pairs:
            self[key] = module


class Identity(Module):
    """y = x, unchanged (the same array): a placeholder where a model's layer is optional,
    e.g. a residual block's shortcut without downsampling. Accepts and ignores any
    arguments, as torch.nn.Identity. Backward returns the gradient as it came."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        """Returns x itself (no copy), keeping its shape to check backward's gradient."""
        self._save_for_backward(getattr(x, "shape", None))
        return x

    def backward(self, grad_output):
        """grad_output (the output's shape) -> the same array: the input's gradient."""
        (shape,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != shape:
            raise ValueError(f"Identity.backward: grad_output has shape {grad_output.shape}, expected {shape}")
        return grad_output
