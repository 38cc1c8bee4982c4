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
__all__ = ["load_mnist", "mnist_available", "download_mnist", "read_idx", "verify_file", "file_digest",
           "load_digits", "CharVocab", "split_corpus", "StreamBatches", "MNIST_FILES", "default_cache_dir"]

import gzip
import hashlib
import os
import pathlib
import shutil
import struct
import tempfile

import numpy as np

from ._checks import integer

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


def default_cache_dir():
    """Where downloads go: $XDG_CACHE_HOME/pycore or ~/.cache/pycore."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "pycore"


# ---------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------
def read_idx(path, expected_magic, expected_dims=None):
    """Read one IDX file (gzip'ed or raw) as a uint8 array, checking magic number and size.

    IDX: big-endian int32 magic (2051 for images, 2049 for labels), one big-endian int32
    per dimension, then the uint8 values in C order.
    """
    path = pathlib.Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
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


def _find_mnist_dir(path, cache_dir):
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


def _mnist_file(folder, gz_name):
    """The file for gz_name in folder: the .gz itself or its uncompressed twin."""
    for name in (gz_name, gz_name[:-3]):
        if (folder / name).is_file():
            return folder / name
    return None


def mnist_available(path=None, cache_dir=None):
    """True when load_mnist(path) would find the four files without downloading."""
    return _find_mnist_dir(path, cache_dir) is not None


def load_mnist(path=None, download=False, cache_dir=None):
    """Load MNIST: ((x_train, y_train), (x_test, y_test)).

    x: uint8 (N, 28, 28) with N = 60000 / 10000; y: int64 (N,) in 0..9.
    Looks for the four IDX files (train-images-idx3-ubyte[.gz], ...) in `path`, then in
    $PYCORE_DATA/mnist, then in the cache (cache_dir, default ~/.cache/pycore/mnist).
    download=True fetches missing files into the cache from public mirrors and checks
    each against its published MD5 before using it. A truncated or wrong file raises a
    ValueError naming it.
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

    def pair(prefix):
        images = read_idx(_mnist_file(folder, f"{prefix}-images-idx3-ubyte.gz"), _IMAGES_MAGIC, (28, 28))
        labels = read_idx(_mnist_file(folder, f"{prefix}-labels-idx1-ubyte.gz"), _LABELS_MAGIC, ())
        if len(images) != len(labels):
            raise ValueError(f"{folder}: {prefix} has {len(images)} images but {len(labels)} labels")
        if labels.max(initial=0) > 9:
            raise ValueError(f"{folder}: {prefix} labels must be 0..9, found {labels.max()}")
        return images, labels.astype(np.int64)

    return pair("train"), pair("t10k")


def file_digest(path, algorithm="md5"):
    """The hex digest of a file, read in 1 MiB blocks (files larger than memory are fine).

    Args:
        path: the file.
        algorithm: any name hashlib.new accepts ("md5", as MNIST_FILES lists, "sha256", ...).

    Returns:
        The digest as a lowercase hex string.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path, expected, algorithm="md5"):
    """Raise ValueError unless the file's digest equals `expected`."""
    got = file_digest(path, algorithm)
    if got != expected.lower():
        raise ValueError(f"{path}: {algorithm} checksum {got} does not match the expected {expected} "
                         "(incomplete or tampered download)")


def download_mnist(folder, mirrors=MNIST_MIRRORS, files=None, timeout=60):
    """Fetch the MNIST files missing from `folder`, verifying each checksum before it is kept.

    Each file is downloaded to a temporary name, verified, then renamed into place, so a
    failed or corrupted download never leaves a file that load_mnist would pick up.
    `files` maps names to MD5 digests (default MNIST_FILES).
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
def load_digits():
    """scikit-learn's handwritten digits (UCI, 1797 images): (x, y).

    x: float32 (1797, 8, 8) scaled to [0, 1] (the raw values are 0..16); y: int64 (1797,).
    The data ships inside scikit-learn, so this works offline; install it with
    `pip install "pycore[examples]"` (or `pip install scikit-learn`).
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
    """

    def __init__(self, text=None, chars=None):
        if (text is None) == (chars is None):
            raise TypeError("CharVocab: give exactly one of text= (to build from) or chars= (the alphabet)")
        source = text if text is not None else "".join(chars)
        if not isinstance(source, str):
            raise TypeError(f"CharVocab: expected a str, got {type(source).__name__}")
        if not source:
            raise ValueError("CharVocab: the text is empty")
        self.chars = sorted(set(source)) if text is not None else list(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharVocab: chars= repeats a character")
        self._index = {c: i for i, c in enumerate(self.chars)}
        # a lookup table for the common case (all code points small): encode in one numpy pass
        top = max(map(ord, self.chars))
        self._table = None
        if top < 1 << 16:
            self._table = np.full(top + 1, -1, dtype=np.int64)
            for c, i in self._index.items():
                self._table[ord(c)] = i

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """str -> int64 array of ids; ValueError naming a character not in the vocabulary."""
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

    def decode(self, ids):
        """Sequence of ids -> str; ValueError for an id outside 0..len-1."""
        ids = np.asarray(ids).ravel()
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= len(self.chars)):
            raise ValueError(f"CharVocab.decode: ids must be integers in 0..{len(self.chars) - 1}, "
                             f"got values in {ids.min()}..{ids.max()} (dtype {ids.dtype})")
        return "".join(self.chars[i] for i in ids.tolist())

    def state_dict(self):
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_state_dict(cls, state):
        return cls(chars=list(state["chars"]))

    def __repr__(self):
        return f"CharVocab({len(self)} characters)"


def split_corpus(ids, val_fraction=0.1):
    """Split a 1-D id array into (train, validation): the last val_fraction of the text validates."""
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
    """

    def __init__(self, ids, batch_size, seq_len):
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
    def stream_len(self):
        return self.streams.shape[1]

    def __len__(self):
        return -(-(self.stream_len - 1) // self.seq_len)

    def __iter__(self):
        from .train.tbptt import tbptt_batches
        return tbptt_batches(self.streams, self.seq_len, batch_first=True)

    def __repr__(self):
        return f"StreamBatches({self.batch_size} streams of {self.stream_len} ids, seq_len={self.seq_len})"
