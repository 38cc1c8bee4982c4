"""Datasets: MNIST from its IDX files, scikit-learn's 8x8 digits, and character streams.

    (x_train, y_train), (x_test, y_test) = pycore.datasets.load_mnist()    # uint8 (60000, 28, 28)
    x, y = pycore.datasets.load_digits()                                   # float32 (1797, 8, 8)

    vocab = CharVocab(text)                        # characters <-> int64 ids
    train, val = split_corpus(vocab.encode(text), val_fraction=0.1)
    for x, y in StreamBatches(train, batch_size=32, seq_len=100):   # (32, 100) ids, targets shifted by one
        ...

StreamBatches lays a corpus out as batch_size parallel streams, as char-rnn and PyTorch's
word_language_model do: stream b is the b-th contiguous slice of the text, and consecutive
chunks of a stream follow each other, so a recurrent model carries its state from one chunk
to the next (truncated backpropagation through time).
"""
from __future__ import annotations

__all__ = ["load_mnist", "mnist_available", "download_mnist", "read_idx", "verify_file", "file_digest",
           "load_digits", "CharVocab", "split_corpus", "StreamBatches", "MNIST_FILES", "default_cache_dir"]

import gzip
import hashlib
import os
import pathlib
import shutil
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Union

import numpy as np
from numpy.typing import ArrayLike

from ._checks import integer

#: A file or folder name.
PathT = Union[str, "os.PathLike[str]"]
#: (images, labels) arrays.
Pair = tuple[np.ndarray, np.ndarray]

#: The four MNIST files: name -> MD5 (as torchvision lists them; the files are the same on every
#: mirror). download_mnist checks every file it fetches against it.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # IDX: 0x0000 0x08 (uint8) 0x03 / 0x01 (dims)


def default_cache_dir() -> pathlib.Path:
    """Where downloads go.

    Returns:
        pathlib.Path: $XDG_CACHE_HOME/pycore, or ~/.cache/pycore without XDG_CACHE_HOME.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "pycore"


# ---------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------
def read_idx(path: PathT, expected_magic: int, expected_dims: Iterable[int] | None = None) -> np.ndarray:
    """Read one IDX file (gzip'ed or raw) as a uint8 array, checking magic number and size.

    IDX: big-endian int32 magic (2051 for images, 2049 for labels), one big-endian int32
    per dimension, then the uint8 values in C order. A truncated or wrong file raises
    ValueError naming it.

    Args:
        path: str or os.PathLike, the file (gzip'ed when its name ends in .gz).
        expected_magic: int, the magic number the file must start with (2051 or 2049).
        expected_dims: the dimensions after the first (e.g. (28, 28) for MNIST images, ()
            for labels), or None (the default) to accept any.

    Returns:
        ndarray: uint8, of the dimensions the header gives (a copy, writable).
    """
    path = pathlib.Path(path)
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a cut gzip stream an EOFError
        raise ValueError(f"{path}: cannot read the IDX file ({err})") from None
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes is too short for an IDX header (truncated file?)")
    (magic,) = struct.unpack(">i", blob[:4])
    if magic != expected_magic:
        kind = "images" if expected_magic == _IMAGES_MAGIC else "labels"
        raise ValueError(f"{path}: IDX magic number {magic}, expected {expected_magic} for MNIST {kind} "
                         "(wrong or corrupted file?)")
    ndim = magic & 0xFF
    if len(blob) < 4 + 4 * ndim:
        raise ValueError(f"{path}: the header is cut short (truncated file?)")
    dims = struct.unpack(f">{ndim}i", blob[4:4 + 4 * ndim])
    if expected_dims is not None and tuple(dims[1:]) != tuple(expected_dims):
        raise ValueError(f"{path}: dimensions {dims}, expected (N, {', '.join(map(str, expected_dims))})")
    payload = len(blob) - 4 - 4 * ndim
    needed = int(np.prod(dims))
    if payload != needed:
        raise ValueError(f"{path}: dimensions {dims} need {needed} bytes of data, the file holds {payload} "
                         f"({'truncated' if payload < needed else 'trailing bytes'})")
    return np.frombuffer(blob, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _find_mnist_dir(path: PathT | None, cache_dir: PathT | None) -> pathlib.Path | None:
    candidates = []
    if path is not None:
        candidates.append(pathlib.Path(path))
    if os.environ.get("PYCORE_DATA"):
        candidates.append(pathlib.Path(os.environ["PYCORE_DATA"]) / "mnist")
    candidates.append(pathlib.Path(cache_dir) if cache_dir else default_cache_dir() / "mnist")
    for folder in candidates:
        if all(_mnist_file(folder, name) is not None for name in MNIST_FILES):
            return folder
    return None


def _mnist_file(folder: pathlib.Path, gz_name: str) -> pathlib.Path | None:
    """The file for gz_name in folder: the .gz itself or its uncompressed twin."""
    for name in (gz_name, gz_name[:-3]):
        if (folder / name).is_file():
            return folder / name
    return None


def mnist_available(path: PathT | None = None, cache_dir: PathT | None = None) -> bool:
    """Whether load_mnist would find the four files without downloading.

    Args:
        path: str or os.PathLike, a folder to look in first; default None.
        cache_dir: the cache folder, as load_mnist's; default None.

    Returns:
        bool: True when load_mnist(path, cache_dir=cache_dir) would find all four files.
    """
    return _find_mnist_dir(path, cache_dir) is not None


def load_mnist(path: PathT | None = None, download: bool = False,
               cache_dir: PathT | None = None) -> tuple[Pair, Pair]:
    """Load MNIST.

    Looks for the four IDX files (train-images-idx3-ubyte[.gz], ...) in `path`, then in
    $PYCORE_DATA/mnist, then in the cache. A truncated or wrong file raises a ValueError
    naming it; no files (and download=False) raises FileNotFoundError.

    Args:
        path: str or os.PathLike, the folder to look in first; default None.
        download: bool, fetch missing files into the cache from public mirrors, checking
            each against its published MD5 before using it; default False.
        cache_dir: str or os.PathLike, the cache folder; default None:
            default_cache_dir() / "mnist" (~/.cache/pycore/mnist).

    Returns:
        ((x_train, y_train), (x_test, y_test)): x uint8 (N, 28, 28) with N = 60000 /
        10000; y int64 (N,) in 0..9.
    """
    folder = _find_mnist_dir(path, cache_dir)
    if folder is None and download:
        folder = pathlib.Path(cache_dir) if cache_dir else default_cache_dir() / "mnist"
        download_mnist(folder)
    if folder is None:
        where = [str(path)] if path is not None else []
        if os.environ.get("PYCORE_DATA"):
            where.append(os.path.join(os.environ["PYCORE_DATA"], "mnist"))
        where.append(str(pathlib.Path(cache_dir) if cache_dir else default_cache_dir() / "mnist"))
        raise FileNotFoundError("load_mnist: the four MNIST files (train-images-idx3-ubyte.gz, ...) are "
                                f"not in {', '.join(where)}; pass path=DIR or download=True")

    def pair(prefix: str) -> Pair:
        assert folder is not None  # raised above otherwise
        images = read_idx(_found(folder, f"{prefix}-images-idx3-ubyte.gz"), _IMAGES_MAGIC, (28, 28))
        labels = read_idx(_found(folder, f"{prefix}-labels-idx1-ubyte.gz"), _LABELS_MAGIC, ())
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {prefix} has {len(images)} images but {len(labels)} labels")
        if labels.max(initial=0) > 9:
            raise ValueError(f"{folder}: {prefix} labels must be 0..9, found {labels.max()}")
        return images, labels.astype(np.int64)

    return pair("train"), pair("t10k")


def _found(folder: pathlib.Path, gz_name: str) -> pathlib.Path:
    """_mnist_file for a folder _find_mnist_dir or download_mnist vouched for."""
    found = _mnist_file(folder, gz_name)
    if found is None:
        raise FileNotFoundError(f"{folder}: {gz_name} (or its uncompressed twin) is gone")
    return found


def file_digest(path: PathT, algorithm: str = "md5") -> str:
    """The hex digest of a file, read in 1 MiB blocks (files larger than memory are fine).

    Args:
        path: str or os.PathLike, the file.
        algorithm: any name hashlib.new accepts ("md5", the default, as MNIST_FILES lists,
            "sha256", ...).

    Returns:
        str: the digest as a lowercase hex string.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: PathT, expected: str, algorithm: str = "md5") -> None:
    """Raise ValueError unless the file's digest equals `expected`.

    Args:
        path: str or os.PathLike, the file.
        expected: str, the hex digest it must have (any case).
        algorithm: any name hashlib.new accepts; default "md5".
    """
    got = file_digest(path, algorithm)
    if got != expected.lower():
        raise ValueError(f"{path}: {algorithm} checksum {got} does not match the expected {expected} "
                         "(incomplete or tampered download)")


def download_mnist(folder: PathT, mirrors: Iterable[str] = MNIST_MIRRORS, files: Mapping[str, str] | None = None,
                   timeout: float = 60) -> None:
    """Fetch the MNIST files missing from `folder`, verifying each checksum before it is kept.

    Each file is downloaded to a temporary name, verified, then renamed into place, so a
    failed or corrupted download never leaves a file that load_mnist would pick up. A file
    already there is verified instead (ValueError when it does not match). OSError when no
    mirror gives a verified copy.

    Args:
        folder: str or os.PathLike, created if missing.
        mirrors: base URLs tried in order for each file; default MNIST_MIRRORS.
        files: dict mapping names to MD5 digests; default None: MNIST_FILES.
        timeout: float, seconds each connection may wait; default 60.
    """
    import urllib.request  # here, not at the top: it pulls in http, ssl and email (~20 ms of every import pycore)

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, digest in (files or MNIST_FILES).items():
        target = folder / name
        if target.is_file():
            verify_file(target, digest)
            continue
        errors = []
        for mirror in mirrors:
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + name, timeout=timeout) as resp:
                    shutil.copyfileobj(resp, out)
                verify_file(temp, digest)
                os.replace(temp, target)
                break
            except (OSError, ValueError) as err:
                errors.append(f"{mirror}{name}: {err}")
            finally:
                if os.path.exists(temp):
                    os.unlink(temp)
        else:
            raise OSError("download_mnist: could not fetch a verified copy of " + name + ":\n  "
                          + "\n  ".join(errors))


# ---------------------------------------------------------------------------------------------
# scikit-learn's digits
# ---------------------------------------------------------------------------------------------
def load_digits() -> Pair:
    """scikit-learn's handwritten digits (UCI, 1797 images).

    The data ships inside scikit-learn, so this works offline; install it with
    `pip install "pycore[examples]"` (or `pip install scikit-learn`).

    Returns:
        (x, y): x float32 (1797, 8, 8) scaled to [0, 1] (the raw values are 0..16);
        y int64 (1797,) in 0..9.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ImportError("load_digits needs scikit-learn, which ships the digits data: "
                          'pip install "pycore[examples]"  (or: pip install scikit-learn)') from None
    bunch = sklearn_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0).astype(np.float32)
    return x, np.asarray(bunch.target, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# character streams for truncated BPTT
# ---------------------------------------------------------------------------------------------
class CharVocab:
    """The characters of a text, each mapped to an id 0..len-1 (in sorted order).

        vocab = CharVocab(text); ids = vocab.encode("hello"); vocab.decode(ids) == "hello"

    Args:
        text: str, the text whose distinct characters make the vocabulary (sorted).
        chars: the alphabet in id order (an iterable of single characters, no repeats),
            e.g. from state_dict(). Give exactly one of text and chars.
    """

    def __init__(self, text: str | None = None, chars: Iterable[str] | None = None) -> None:
        if (text is None) == (chars is None):
            raise TypeError("CharVocab: give exactly one of text= (to build from) or chars= (the alphabet)")
        alphabet = None if chars is None else list(chars)  # read once: chars may be an iterator
        source = text if alphabet is None else "".join(alphabet)
        if not isinstance(source, str):
            raise TypeError(f"CharVocab: expected a str, got {type(source).__name__}")
        if not source:
            raise ValueError("CharVocab: the text is empty")
        self.chars = sorted(set(source)) if alphabet is None else alphabet
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharVocab: chars= repeats a character")
        self._index = {c: i for i, c in enumerate(self.chars)}
        # a lookup table for the common case (all code points small): encode in one numpy pass
        top = max(map(ord, self.chars))
        self._table: np.ndarray | None = None
        if top < 1 << 16:
            self._table = np.full(top + 1, -1, dtype=np.int64)
            for c, i in self._index.items():
                self._table[ord(c)] = i

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Map characters to ids; ValueError naming a character not in the vocabulary.

        Args:
            text: str.

        Returns:
            ndarray: int64 (len(text),), the ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"CharVocab.encode: expected a str, got {type(text).__name__}")
        if self._table is not None:
            # surrogatepass: a lone surrogate (e.g. from text decoded with errors="surrogateescape")
            # is a code point like any other, encoded as itself instead of raising
            codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
            ids = np.full(codes.shape, -1, dtype=np.int64)
            inside = codes < len(self._table)
            ids[inside] = self._table[codes[inside]]
        else:
            ids = np.array([self._index.get(c, -1) for c in text], dtype=np.int64)
        if ids.size and ids.min() < 0:
            bad = text[int(np.argmin(ids))]
            raise ValueError(f"CharVocab.encode: character {bad!r} is not in the vocabulary")
        return ids

    def decode(self, ids: ArrayLike) -> str:
        """Map ids back to characters; ValueError for an id outside 0..len-1.

        Args:
            ids: integer array (any shape, read in C order) or sequence of ids.

        Returns:
            str: the characters.
        """
        ids = np.asarray(ids).ravel()
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"CharVocab.decode: ids must be integers in 0..{len(self.chars) - 1}, "
                             f"got values in {ids.min()}..{ids.max()} (dtype {ids.dtype})")
        return "".join(self.chars[i] for i in ids.tolist())

    def state_dict(self) -> dict[str, str]:
        """The vocabulary as checkpoint metadata.

        Returns:
            dict: {'chars': the alphabet in id order, as one str}.
        """
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, str]) -> CharVocab:
        """Rebuild a vocabulary from state_dict()'s value.

        Args:
            state: dict {'chars': str}.

        Returns:
            CharVocab: with the same ids.
        """
        return cls(chars=list(state["chars"]))

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} characters)"


def split_corpus(ids: ArrayLike, val_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Split a 1-D id array in two: the last val_fraction of the text validates.

    Args:
        ids: 1-D array, the corpus (CharVocab.encode of the text).
        val_fraction: float in (0, 1), the share that validates; default 0.1.

    Returns:
        (train, validation): views of the first and last parts of ids.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"split_corpus: ids must be 1-D, got shape {ids.shape}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"split_corpus: val_fraction must be in (0, 1), got {val_fraction}")
    cut = int(round(len(ids) * (1.0 - float(val_fraction))))
    return ids[:cut], ids[cut:]


class StreamBatches:
    """Chunks of batch_size parallel streams of a 1-D id array, for truncated BPTT.

    The text (length L) is cut into batch_size contiguous streams of S = L // batch_size ids
    (pycore.train.batchify; the remainder is dropped). Chunk k holds steps k*seq_len ... of
    every stream (pycore.train.tbptt_batches, batch-first):
        x: int64 (batch_size, T)   ids,  T = seq_len (the last chunk may be shorter)
        y: int64 (batch_size, T)   the next id of each position (the target)
    Iterating yields (x, y) chunks in order; carry a recurrent state from one chunk to the
    next. len() is the number of chunks.

    Args:
        ids: 1-D integer array, the corpus (at least 2 ids per stream).
        batch_size: int >= 1, the number of parallel streams.
        seq_len: int >= 1, the steps per chunk.
    """

    def __init__(self, ids: ArrayLike, batch_size: int, seq_len: int) -> None:
        from .train.tbptt import batchify  # here, not at the top: pycore.train imports this module's users
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ValueError(f"StreamBatches: ids must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        self.batch_size = integer(batch_size, "batch_size", minimum=1)
        self.seq_len = integer(seq_len, "seq_len", minimum=1)
        if len(ids) < 2 * self.batch_size:
            raise ValueError(f"StreamBatches: {len(ids)} ids are too few for {self.batch_size} streams "
                             "of at least 2 ids (an input and its target)")
        self.streams = batchify(ids.astype(np.int64, copy=False), self.batch_size)  # (batch_size, S)

    @property
    def stream_len(self) -> int:
        """The ids in each stream (S)."""
        return self.streams.shape[1]

    def __len__(self) -> int:
        return -(-(self.stream_len - 1) // self.seq_len)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from .train.tbptt import tbptt_batches
        return tbptt_batches(self.streams, self.seq_len, batch_first=True)

    def __repr__(self) -> str:
        return f"StreamBatches({self.batch_size} streams of {self.stream_len} ids, seq_len={self.seq_len})"
