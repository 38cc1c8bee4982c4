"""ModuleList, ModuleDict and Identity: PyTorch's containers, registering what they hold.

A module's parameters are found by walking its attributes (nn/module.py), so a container
stores each module it holds as an attribute named as PyTorch names it: "0", "1", ... for
ModuleList, the key for ModuleDict. state_dict keys are then torch's ("blocks.0.weight",
"heads.cls.bias"). Neither defines forward: the owning model iterates over them, as in
PyTorch. A plain list/tuple/dict of modules set as an attribute raises a TypeError
(Module.__setattr__) that points here.
"""
from __future__ import annotations

__all__ = ["ModuleList", "ModuleDict", "Identity"]
import operator
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, overload

import numpy as np

from .module import Module


def _module(value: Any, where: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{where}: expected a Module, got {type(value).__name__}")
    return value


class ModuleList(Module):
    """A list of modules, registered as children "0", "1", ...: indexing, len, iteration,
    append, extend, insert, slicing (a new ModuleList), item assignment and deletion (the
    names are renumbered as PyTorch does).

    Args:
        modules (iterable of Module or None, default None): the initial modules.
    """

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _items(self) -> list[Module]:
        return list(self.children())

    def _reset(self, items: list[Module]) -> None:
        for name, _ in list(self.named_children()):
            delattr(self, name)
        for i, m in enumerate(items):
            setattr(self, str(i), m)

    def _index(self, index: int, size: int) -> int:
        index = operator.index(index)
        if not -size <= index < size:
            raise IndexError(f"ModuleList: index {index} is out of range for {size} modules")
        return index % size

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())

    @overload
    def __getitem__(self, index: int) -> Module: ...
    @overload
    def __getitem__(self, index: slice) -> ModuleList: ...

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        items = self._items()
        if isinstance(index, slice):
            return ModuleList(items[index])
        return items[self._index(index, len(items))]

    def __setitem__(self, index: int, module: Module) -> None:
        items = self._items()
        setattr(self, str(self._index(index, len(items))), _module(module, "ModuleList[index] = value"))

    def __delitem__(self, index: int | slice) -> None:
        items = self._items()
        if isinstance(index, slice):
            del items[index]
        else:
            del items[self._index(index, len(items))]
        self._reset(items)

    def append(self, module: Module) -> ModuleList:
        """Add a module at the end.

        Args:
            module (Module): registered as child str(len(self)).

        Returns:
            ModuleList: this list.
        """
        setattr(self, str(len(self)), _module(module, "ModuleList.append"))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Add modules at the end, in order; nothing is added unless every item is a Module.

        Args:
            modules (iterable of Module): the modules to add.

        Returns:
            ModuleList: this list.
        """
        if isinstance(modules, Module) or not hasattr(modules, "__iter__"):
            raise TypeError(f"ModuleList.extend: expected an iterable of Modules, got {type(modules).__name__}")
        modules = list(modules)
        for i, m in enumerate(modules):
            _module(m, f"ModuleList: item {i}")
        start = len(self)
        for i, m in enumerate(modules):
            setattr(self, str(start + i), m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert a module before position index (list.insert's rule); the names are renumbered.

        Args:
            index (int): the position (negative: from the end; past the end: appended).
            module (Module): the module to insert.
        """
        _module(module, "ModuleList.insert")
        items = self._items()
        items.insert(operator.index(index), module)
        self._reset(items)


class ModuleDict(Module):
    """An ordered dict of modules, each registered as a child under its key: [key], keys,
    values, items, len, iteration over the keys, `in`, update and pop. Keys are strings
    without "." that are not already attributes of a module ("training", "forward"...),
    as PyTorch requires.

    Args:
        modules (mapping or iterable of (str, Module) pairs, or None, default None): the
            initial entries, as update() takes them.
    """

    _keys: list[str]  # the keys in insertion order (set in __dict__: not a child)

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        super().__init__()
        self.__dict__["_keys"] = []
        if modules is not None:
            self.update(modules)

    def _check_key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"ModuleDict: keys must be strings, got {type(key).__name__}")
        if not key or "." in key:
            raise KeyError(f"ModuleDict: key {key!r} must be a non-empty string without '.'")
        if key not in self._keys and hasattr(self, key):
            raise KeyError(f"ModuleDict: key {key!r} is already an attribute of a module; choose another name")
        return key

    def __getitem__(self, key: str) -> Module:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, module: Module) -> None:
        self._check_key(key)
        _module(module, f"ModuleDict[{key!r}]")
        if key not in self._keys:
            self._keys.append(key)
        setattr(self, key, module)

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._keys.remove(key)
        delattr(self, key)

    def pop(self, key: str) -> Module:
        """Remove an entry and return its module.

        Args:
            key (str): the entry's key (KeyError when absent).

        Returns:
            Module: the module that was stored under key.
        """
        module = self[key]
        del self[key]
        return module

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self) -> list[str]:
        """The keys, in insertion order.

        Returns:
            list of str: a new list.
        """
        return list(self._keys)

    def values(self) -> list[Module]:
        """The modules, in insertion order.

        Returns:
            list of Module: a new list.
        """
        return [getattr(self, k) for k in self._keys]

    def items(self) -> list[tuple[str, Module]]:
        """The (key, module) pairs, in insertion order.

        Returns:
            list of (str, Module): a new list.
        """
        return [(k, getattr(self, k)) for k in self._keys]

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add (or replace) entries; nothing changes unless every entry is valid.

        Args:
            modules (mapping or iterable of (str, Module) pairs): the entries, in order.
        """
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
    e.g. a residual block's shortcut without downsampling. Backward returns the gradient
    as it came.

    Args:
        *args, **kwargs: accepted and ignored, as torch.nn.Identity does.

    Shape:
        input (*) -> output (*), the same array.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        """Return x itself (no copy), keeping its shape to check backward's gradient.

        Args:
            x: anything (normally an array).

        Returns:
            x, the same object.
        """
        self._save_for_backward(getattr(x, "shape", None))
        return x

    def backward(self, grad_output: np.ndarray) -> np.ndarray | None:
        """The gradient, unchanged.

        Args:
            grad_output (np.ndarray): the loss's gradient with respect to the output, of
                x's shape.

        Returns:
            np.ndarray or None: grad_output itself (as a float array): the input's
            gradient; None when `requires_input_grad` is False.
        """
        (shape,) = self._pop_saved()
        if not self.requires_input_grad:
            return None
        grad_output = self._check_input(grad_output, "grad_output")
        if grad_output.shape != shape:
            raise ValueError(f"Identity.backward: grad_output has shape {grad_output.shape}, expected {shape}")
        return grad_output
