"""Checkpoints that cannot run code and cannot be half-written.

    pycore.save("ckpt.safetensors", model, optimizer, epoch=3, rng_state=pycore.get_rng_state())
    meta = pycore.load("ckpt.safetensors", model, optimizer)      # -> {"epoch": 3, "rng_state": {...}}
    state_dict, meta = pycore.load("ckpt.safetensors")            # without a model

The file is a safetensors file, written here in plain Python + numpy:

    8 bytes    N, the header length (little-endian uint64)
    N bytes    JSON: {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
                      "__metadata__": {str: str}}      (padded with spaces to a multiple of 8)
    payload    the tensors' raw little-endian bytes, back to back, offsets relative to its start

so PyTorch (`safetensors.torch.load_file`) reads the weights. The model's weights are
stored under their state_dict names; the optimizer's arrays under "optimizer/...", and
arrays in the metadata under "metadata/..." ('/' never occurs in a module's keys). Everything
else (numbers, strings, lists, dicts) is JSON in __metadata__, where "pycore.sha256" is a
checksum of the header and payload: a bit flip anywhere is detected.

Loading never executes code: no pickle, no imports named by the file. The header is
validated (size cap, JSON, known dtypes, shapes, offsets contiguous and within the file)
before a byte of payload is read, and any problem raises CheckpointError (a ValueError).

Writes are atomic: the bytes go to a temporary file in the same directory, which is flushed,
fsync'ed and renamed over the target (os.replace), then the directory is fsync'ed. A process
killed at any moment leaves either the old checkpoint or the new one, never a mix; an
exception during a save leaves the old file untouched. Temporary files left by a killed
save are removed by the next save to the same path.
"""
from __future__ import annotations

__all__ = ["save", "load", "save_safetensors", "load_safetensors", "CheckpointError"]

import base64
import hashlib
import json
import math
import numbers
import os
import re
import struct
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, Union, overload

import numpy as np
from numpy.typing import ArrayLike


class Stateful(Protocol):
    """A model as save and load see it: PyTorch's state_dict()/load_state_dict() pair (a
    pycore Module, or a DistributedDataParallel around one)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any, strict: bool = ...) -> Any: ...


#: A file name.
PathT = Union[str, "os.PathLike[str]"]
#: What save takes as the model: a Module, or its state_dict (name -> array).
ModelOrState = Union[Stateful, Mapping[str, ArrayLike]]

FORMAT_NAME = "pycore"
FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own cap: a larger header is refused unread
CHECKSUM_KEY = "pycore.sha256"

# safetensors dtype names <-> numpy little-endian dtypes
_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items()}

_OPTIMIZER_PREFIX = "optimizer/"
_METADATA_PREFIX = "metadata/"


class CheckpointError(ValueError):
    """The file is not a valid pycore checkpoint: truncated, corrupted, tampered with or foreign."""


# ---------------------------------------------------------------------------------------------
# the safetensors container
# ---------------------------------------------------------------------------------------------
def save_safetensors(path: PathT, tensors: Mapping[str, ArrayLike], metadata: Mapping[str, str] | None = None,
                     ) -> None:
    """Write arrays (and an optional metadata map) as a safetensors file, atomically.

    Arrays keep their dtype and shape; they are stored little-endian and C-ordered.

    Args:
        path: str or os.PathLike, the file, replaced atomically.
        tensors: dict name -> numpy array (float16/32/64, int8-64, uint8-64 or bool); no
            name may be '__metadata__'.
        metadata: dict str -> str, stored in the header's __metadata__; default None.
    """
    header, payload = _encode_container(tensors, metadata or {})
    _atomic_write(path, (header, *payload))


def load_safetensors(path: PathT) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file (pycore's or PyTorch's). Validates everything; raises
    CheckpointError for a malformed file.

    Args:
        path: str or os.PathLike, the file.

    Returns:
        (tensors, metadata): dict name -> array (native byte order, a fresh copy), and the
        header's __metadata__ dict str -> str (without pycore's checksum).
    """
    tensors, metadata, _ = _read_container(path)
    return tensors, metadata


def _encode_container(tensors: Mapping[str, ArrayLike], metadata: Mapping[str, str]) -> tuple[bytes, list[bytes]]:
    entries: dict[str, dict[str, Any]] = {}
    payload: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"save: tensor names must be strings other than '__metadata__', got {name!r}")
        array = np.asarray(array)
        key = (array.dtype.kind, array.dtype.itemsize)
        if key not in _NAMES:
            raise TypeError(f"save: tensor {name!r} has dtype {array.dtype}, which a checkpoint cannot "
                            f"store (supported: float16/32/64, int8-64, uint8-64, bool)")
        data = np.ascontiguousarray(array, dtype=_DTYPES[_NAMES[key]]).tobytes()
        entries[name] = {"dtype": _NAMES[key], "shape": list(array.shape),
                         "data_offsets": [offset, offset + len(data)]}
        payload.append(data)
        offset += len(data)
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"save: __metadata__ must map str to str, got {k!r}: {type(v).__name__}")
    digest = _checksum(entries, metadata, payload)
    header = dict(entries)
    header["__metadata__"] = {**metadata, CHECKSUM_KEY: digest}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the payload starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(text)) + text, payload


def _checksum(entries: Mapping[str, Any], metadata: Mapping[str, str], payload: Iterable[bytes | memoryview]) -> str:
    """SHA-256 of the header (canonical JSON, without the checksum itself) and the payload."""
    h = hashlib.sha256()
    h.update(json.dumps({"tensors": entries, "metadata": metadata}, sort_keys=True,
                        separators=(",", ":")).encode("utf-8"))
    for chunk in payload:
        h.update(chunk)
    return h.hexdigest()


def _read_container(path: PathT) -> tuple[dict[str, np.ndarray], dict[str, str], bool]:
    """Parse and validate a safetensors file: (tensors, metadata, had_checksum)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"load: no checkpoint at {name!r}") from None

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{name}: not a valid pycore/safetensors checkpoint: {why}")

    if len(blob) < 8:
        raise bad(f"the file has {len(blob)} bytes, fewer than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(blob):
        if blob[:4] == b"PK\x03\x04":
            raise bad("it is a zip archive (npz or torch.save), not a safetensors file")
        if blob[:1] == b"\x80":
            raise bad("it looks like a pickle, which pycore never loads (unpickling can run code)")
    if header_len > MAX_HEADER_BYTES:
        raise bad(f"the header claims {header_len} bytes, more than the {MAX_HEADER_BYTES}-byte cap")
    if 8 + header_len > len(blob):
        raise bad(f"the header claims {header_len} bytes but the file has only {len(blob) - 8} after "
                  "the length (truncated?)")
    raw = blob[8:8 + header_len]
    if not raw.lstrip().startswith(b"{"):
        raise bad("the header is not a JSON object")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise bad(f"the header repeats a key: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
        return dict(pairs)

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise bad(f"the header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise bad("__metadata__ must map strings to strings")

    payload_len = len(blob) - 8 - header_len
    spans = []
    for tname, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {tname!r}: expected keys dtype, shape, data_offsets, got {entry!r:.200}")
        if entry["dtype"] not in _DTYPES:
            raise bad(f"tensor {tname!r}: unknown dtype {entry['dtype']!r}")
        shape, offsets = entry["shape"], entry["data_offsets"]
        problem = _shape_problem(shape, _DTYPES[entry["dtype"]])
        if problem:
            raise bad(f"tensor {tname!r}: {problem}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or offsets[0] > offsets[1]):
            raise bad(f"tensor {tname!r}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                      f"got {offsets!r:.200}")
        nbytes = math.prod(shape) * _DTYPES[entry["dtype"]].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise bad(f"tensor {tname!r}: shape {shape} of {entry['dtype']} needs {nbytes} bytes, "
                      f"its offsets span {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], tname))
    position = 0
    for begin, end, tname in sorted(spans):
        if begin != position:
            raise bad(f"tensor {tname!r} starts at byte {begin} of the payload, expected {position} "
                      "(the tensors must be contiguous and must not overlap)")
        position = end
    if position != payload_len:
        raise bad(f"the tensors need {position} payload bytes but the file holds {payload_len} "
                  f"({'truncated' if payload_len < position else 'trailing bytes'})")

    payload = memoryview(blob)[8 + header_len:]
    stored = metadata.pop(CHECKSUM_KEY, None)
    if stored is not None:
        chunks = [payload[b:e] for b, e, _ in sorted(spans)]
        ordered = {t: header[t] for _, _, t in sorted(spans)}
        if _checksum(ordered, metadata, chunks) != stored:
            raise bad("the checksum does not match: the file was corrupted or modified after it was written")
    tensors = {}
    for tname, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(payload[begin:end], dtype=_DTYPES[entry["dtype"]])
        # native byte order, as numpy's canonical dtype object (kernels compare dtypes by identity)
        tensors[tname] = array.reshape(entry["shape"]).astype(np.dtype(array.dtype.char), copy=True)
    return tensors, metadata, stored is not None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


MAX_DIMS = 64  # numpy's limit on the number of axes
MAX_NBYTES = 2**62  # beyond any file; numpy refuses sizes near 2**63 even with a zero axis


def _shape_problem(shape: object, dtype: np.dtype) -> str | None:
    """Why `shape` (read from a file) cannot be an array of `dtype`, or None when it can.
    An empty tensor still needs a shape numpy accepts: (0, 2**70) or 100 axes are refused."""
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        return f"shape must be a list of non-negative ints, got {shape!r:.200}"
    if len(shape) > MAX_DIMS:
        return f"shape has {len(shape)} dimensions, more than numpy's {MAX_DIMS}"
    if math.prod(d for d in shape if d) * dtype.itemsize > MAX_NBYTES:
        return f"shape {shape!r:.200} is too large for an array (more than 2**62 bytes, ignoring zero axes)"
    return None


# ---------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------
_TEMP_SUFFIX = ".pycore-tmp"
# Temp files this process is writing right now (several threads may save to one path at
# once): the stale-temp clean-up must never delete one of them.
_in_flight: set[str] = set()
_in_flight_lock = threading.Lock()


def _temp_pattern(base: str) -> re.Pattern[str]:
    return re.compile(r"^\." + re.escape(base) + r"\.(\d+)\.[0-9a-f]+" + re.escape(_TEMP_SUFFIX) + "$")


def _atomic_write(path: PathT, chunks: Iterable[bytes]) -> None:
    """Write the byte chunks to `path` so that it holds either its old or its new content."""
    target = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(target)
    if os.path.isdir(target):
        raise IsADirectoryError(f"save: {target!r} is a directory")
    _remove_stale_temps(directory, base)
    temp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(6).hex()}{_TEMP_SUFFIX}")
    with _in_flight_lock:
        _in_flight.add(temp)
    try:
        with open(temp, "xb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:  # including KeyboardInterrupt: never leave a temp file behind
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    finally:
        with _in_flight_lock:
            _in_flight.discard(temp)
    _fsync_directory(directory)


def _remove_stale_temps(directory: str, base: str) -> None:
    """Delete temp files of earlier saves to `base` whose writing process is gone (killed)."""
    pattern = _temp_pattern(base)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in names:
        match = pattern.match(entry)
        temp = os.path.join(directory, entry)
        if match and not _process_alive(int(match.group(1))):
            with _in_flight_lock:
                if temp in _in_flight:  # another thread of this process is writing it
                    continue
            try:
                os.unlink(temp)
            except OSError:
                pass


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers, unless still in _in_flight (checked by the caller)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# nested values (optimizer state, metadata) <-> JSON
# ---------------------------------------------------------------------------------------------
# JSON has no arrays, tuples or non-string dict keys, so tagged objects carry them:
#   {"__array__": {"dtype": "F32", "shape": [4, 3], "data": base64}}  an array, inside the JSON
#   {"__tensor__": "optimizer/state/0/momentum_buffer"}   an array stored as a tensor of the file
#                                                         (files of pycore <= 0.x; large states)
#   {"__tuple__": [...]}                                   a tuple (e.g. Adam's betas)
#   {"__items__": [[key, value], ...]}                     a dict with non-string keys
# Arrays go inside the JSON, so the file's tensors are exactly the model's state_dict and
# PyTorch's strict load_state_dict(safetensors.torch.load_file(path)) accepts it.
# Decoding only ever builds these plain values: nothing in a file can name code to run.
_TAGS = ("__array__", "__tensor__", "__tuple__", "__items__")
MAX_NESTING = 64  # levels of lists/dicts in metadata; deeper is refused (it would exhaust the stack)
# safetensors (Rust, hence PyTorch) refuses headers over 100,000,000 bytes: optimizer and
# metadata arrays that would push the header past this budget are stored as tensors instead.
INLINE_BUDGET = 90_000_000


def _encode(value: Any, prefix: str, tensors: dict[str, Any], where: str, inline: bool, depth: int = 0) -> Any:
    if depth > MAX_NESTING:
        raise ValueError(f"save: {where} is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, np.ndarray):
        key = (value.dtype.kind, value.dtype.itemsize)
        if key not in _NAMES:
            raise TypeError(f"save: {where} has dtype {value.dtype}, which a checkpoint cannot store")
        if inline:
            data = np.ascontiguousarray(value, dtype=_DTYPES[_NAMES[key]]).tobytes()
            return {"__array__": {"dtype": _NAMES[key], "shape": list(value.shape),
                                  "data": base64.b64encode(data).decode("ascii")}}
        name = prefix.rstrip("/") or prefix
        if name in tensors:
            raise ValueError(f"save: {where} would be stored as tensor {name!r}, which is already taken "
                             "(a dict key containing '/'?)")
        tensors[name] = value
        return {"__tensor__": name}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{prefix}{i}/", tensors, f"{where}[{i}]", inline, depth + 1)
                 for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict):
        plain = all(isinstance(k, str) for k in value) and not any(t in value for t in _TAGS)
        if plain:
            return {k: _encode(v, f"{prefix}{k}/", tensors, f"{where}[{k!r}]", inline, depth + 1)
                    for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not (k is None or isinstance(k, (bool, str, numbers.Integral, numbers.Real))):
                raise TypeError(f"save: {where} has a key of type {type(k).__name__}; checkpoint dict keys "
                                "must be strings or numbers")
            items.append([_encode(k, "", {}, where, inline, depth + 1),
                          _encode(v, f"{prefix}{k}/", tensors, f"{where}[{k!r}]", inline, depth + 1)])
        return {"__items__": items}
    raise TypeError(f"save: {where} is a {type(value).__name__}; a checkpoint stores only arrays, numbers, "
                    "strings, None, lists, tuples and dicts")


def _decode(value: Any, tensors: Mapping[str, np.ndarray], source: str, depth: int = 0) -> Any:
    if depth > MAX_NESTING:
        raise CheckpointError(f"{source}: the metadata is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, list):
        return [_decode(v, tensors, source, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and "__array__" in value:
            return _decode_array(value["__array__"], source)
        if len(value) == 1 and "__tensor__" in value:
            name = value["__tensor__"]
            if not isinstance(name, str) or name not in tensors:
                raise CheckpointError(f"{source}: metadata refers to a missing tensor {name!r:.100}")
            return tensors[name]
        if len(value) == 1 and "__tuple__" in value and isinstance(value["__tuple__"], list):
            return tuple(_decode(v, tensors, source, depth + 1) for v in value["__tuple__"])
        if len(value) == 1 and "__items__" in value and isinstance(value["__items__"], list):
            out = {}
            for pair in value["__items__"]:
                if not isinstance(pair, list) or len(pair) != 2 or isinstance(pair[0], (list, dict)):
                    raise CheckpointError(f"{source}: malformed dict entry {pair!r:.100} in the metadata")
                out[pair[0]] = _decode(pair[1], tensors, source, depth + 1)
            return out
        return {k: _decode(v, tensors, source, depth + 1) for k, v in value.items()}
    return value


def _decode_array(entry: Any, source: str) -> np.ndarray:
    """An {"__array__": ...} value, checked like a tensor of the header before numpy sees it."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data"}:
        raise CheckpointError(f"{source}: malformed array in the metadata: expected dtype, shape and data, "
                              f"got {entry!r:.100}")
    if entry["dtype"] not in _DTYPES or not isinstance(entry["data"], str):
        raise CheckpointError(f"{source}: array in the metadata with unknown dtype {entry['dtype']!r:.50}")
    dtype = _DTYPES[entry["dtype"]]
    problem = _shape_problem(entry["shape"], dtype)
    if problem:
        raise CheckpointError(f"{source}: array in the metadata: {problem}")
    try:
        data = base64.b64decode(entry["data"], validate=True)
    except ValueError:
        raise CheckpointError(f"{source}: array in the metadata whose data is not base64") from None
    if len(data) != math.prod(entry["shape"]) * dtype.itemsize:
        raise CheckpointError(f"{source}: array in the metadata of shape {entry['shape']} and dtype "
                              f"{entry['dtype']} holds {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(entry["shape"]).astype(np.dtype(dtype.char), copy=True)


# ---------------------------------------------------------------------------------------------
# save / load
# ---------------------------------------------------------------------------------------------
def save(path: PathT, model: ModelOrState, optimizer: Any = None, **metadata: Any) -> None:
    """Save a model's state_dict, optionally its optimizer's state, and metadata, atomically.

    Args:
        path: str or os.PathLike, the file to write (conventionally *.safetensors);
            replaced atomically.
        model: a pycore Module, or a dict name -> array (a state_dict).
        optimizer: anything with state_dict() returning arrays, numbers, strings, lists,
            dicts (a pycore Optimizer), or such a state itself; default None.
        **metadata: e.g. epoch=3, step=1200, rng_state=pycore.get_rng_state(),
            loader_state=loader.state_dict(), hparams={...}: values made of arrays, numbers,
            strings, None, lists, tuples and dicts.

    The file's tensors are the model's state_dict and nothing else (PyTorch's strict
    load_state_dict accepts safetensors.torch.load_file(path)); the optimizer state and the
    metadata, arrays included, are JSON in the safetensors __metadata__ ("optimizer" and
    "metadata" entries), which safetensors.torch does not return. Only when they would make
    the header larger than safetensors accepts (~90 MB) are their arrays stored as tensors
    named "optimizer/..." and "metadata/..." instead, with a warning.
    """
    state = model.state_dict() if hasattr(model, "state_dict") else model
    if not hasattr(state, "items"):
        raise TypeError(f"save: model must be a Module or a dict of arrays, got {type(model).__name__}")
    tensors = {}
    for key, value in state.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"save: state_dict keys must be strings without '/', got {key!r}")
        tensors[key] = np.asarray(value)
    info = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    try:
        from . import __version__
        info["pycore_version"] = __version__
    except ImportError:  # pragma: no cover - a partially built package
        pass
    info["model_keys"] = json.dumps(list(tensors))
    opt_state = None
    if optimizer is not None:
        opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    for inline in (True, False):
        extra = dict(tensors)
        if opt_state is not None:
            info["optimizer"] = json.dumps(_encode(opt_state, _OPTIMIZER_PREFIX, extra, "optimizer state", inline))
        info["metadata"] = json.dumps({k: _encode(v, f"{_METADATA_PREFIX}{k}/", extra, f"metadata {k!r}", inline)
                                       for k, v in metadata.items()})
        if not inline or len(info.get("optimizer", "")) + len(info["metadata"]) <= INLINE_BUDGET:
            break
        warnings.warn(f"save: the optimizer state and metadata are too large for the safetensors header "
                      f"({len(info.get('optimizer', '')) + len(info['metadata'])} bytes of JSON); their arrays "
                      f"are stored as 'optimizer/...' and 'metadata/...' tensors, which PyTorch's strict "
                      f"load_state_dict will reject as unexpected keys", stacklevel=2)
    save_safetensors(path, extra, info)


@overload
def load(path: PathT, model: None = None, optimizer: Any = None,
         strict: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]: ...
@overload
def load(path: PathT, model: Stateful, optimizer: Any = None, strict: bool = True) -> dict[str, Any]: ...
def load(path: PathT, model: Stateful | None = None, optimizer: Any = None,
         strict: bool = True) -> dict[str, Any] | tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a checkpoint written by save() (by this or an earlier version of pycore).

    Raises CheckpointError (a ValueError) for a file that is truncated, corrupted, modified
    or not a pycore checkpoint. Loading is all-or-nothing: when anything does not fit (a
    shape, the optimizer's state, a read-only parameter), neither the model nor the
    optimizer is changed.

    Args:
        path: str or os.PathLike, the checkpoint file.
        model: Module or None: receives the weights (load_state_dict); default None.
        optimizer: an object with load_state_dict (a pycore Optimizer) or None: receives
            the saved optimizer state (ValueError when the file has none); default None.
        strict: bool, the model's load_state_dict's strict (every key must match);
            default True.

    Returns:
        dict, or (state_dict, metadata): with a model, the metadata dict (save's keyword
        arguments); without one, the weights as a dict name -> array and the metadata.
    """
    source = os.fspath(path)
    state_dict, opt_state, metadata = read_checkpoint(source)
    if model is None:
        if optimizer is not None:
            _require_optimizer_state(opt_state, source)
            optimizer.load_state_dict(opt_state)
        return state_dict, metadata
    load_state(model, state_dict, optimizer, opt_state, source, strict)
    return metadata


def read_checkpoint(path: PathT) -> tuple[dict[str, np.ndarray], Any, dict[str, Any]]:
    """Read and validate a checkpoint without changing anything.

    Args:
        path: str or os.PathLike, the checkpoint file.

    Returns:
        (model state_dict, optimizer state or None, metadata dict).
    """
    source = os.fspath(path)
    tensors, info, had_checksum = _read_container(source)
    if info.get("format") != FORMAT_NAME or not had_checksum:
        raise CheckpointError(f"{source}: a safetensors file, but not a pycore checkpoint (no pycore "
                              "metadata or checksum); read its tensors with pycore.load_safetensors()")
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{source}: checkpoint format version {info.get('format_version')!r:.50}, "
                              f"this pycore reads version {FORMAT_VERSION}")
    try:
        model_keys = json.loads(info["model_keys"])
        metadata = _decode(json.loads(info.get("metadata", "{}")), tensors, source)
        opt_state = (_decode(json.loads(info["optimizer"]), tensors, source)
                     if "optimizer" in info else None)
    except (KeyError, json.JSONDecodeError, TypeError, RecursionError) as err:
        raise CheckpointError(f"{source}: malformed pycore metadata ({type(err).__name__}: {err!s:.200})") from None
    if not isinstance(model_keys, list) or not all(isinstance(k, str) and k in tensors for k in model_keys):
        raise CheckpointError(f"{source}: the model key list does not match the stored tensors")
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{source}: malformed pycore metadata (not a dict)")
    return {k: tensors[k] for k in model_keys}, opt_state, metadata


def _require_optimizer_state(opt_state: Any, source: str) -> None:
    if opt_state is None:
        raise ValueError(f"load: {source} holds no optimizer state, but an optimizer was given")


def load_state(model: Stateful, state_dict: Mapping[str, np.ndarray], optimizer: Any = None, opt_state: Any = None,
               source: str = "load", strict: bool = True) -> None:
    """Load weights and optimizer state all-or-nothing: read-only targets are refused before
    anything is written, and if the optimizer refuses its state the weights are put back.

    Args:
        model: Module, receives state_dict.
        state_dict: dict name -> array, the weights.
        optimizer: an object with load_state_dict, or None (the default).
        opt_state: the optimizer's saved state (needed with an optimizer); default None.
        source: str, what error messages name (the file); default "load".
        strict: bool, load_state_dict's strict; default True.
    """
    if optimizer is not None:
        _require_optimizer_state(opt_state, source)
    current = model.state_dict() if hasattr(model, "state_dict") else {}
    read_only = [k for k, v in current.items()
                 if k in state_dict and isinstance(v, np.ndarray) and not v.flags.writeable]
    if read_only:
        raise ValueError(f"{source}: cannot load into read-only array(s) {read_only[:5]} of the model; "
                         "nothing was changed")
    backup = {k: np.array(v, copy=True) for k, v in current.items()} if optimizer is not None else None
    model.load_state_dict(state_dict, strict=strict)
    if optimizer is None:
        return
    try:
        optimizer.load_state_dict(opt_state)
    except BaseException:
        model.load_state_dict(backup, strict=False)
        raise
