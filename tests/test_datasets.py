"""MNIST IDX reading (real files and small synthetic ones), download verification, digits,
and the character stream dataset."""
import gzip
import hashlib
import struct

import numpy as np
import pytest

from pycore import datasets
from pycore.datasets import CharVocab, StreamBatches, load_mnist, split_corpus
from conftest import data_path


def write_idx(path, array, magic=None, compress=None):
    """IDX as LeCun's page describes it: big-endian magic, big-endian dims, uint8 values."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    blob = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape) + array.tobytes()
    compress = str(path).endswith(".gz") if compress is None else compress
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(blob)
    return blob


def make_fake_mnist(folder, n_train=5, n_test=3, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        ext = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_load_synthetic_idx(tmp_path, gz):
    want = make_fake_mnist(tmp_path, gz=gz)
    (xtr, ytr), (xte, yte) = load_mnist(tmp_path)
    np.testing.assert_array_equal(xtr, want["train"][0])
    np.testing.assert_array_equal(ytr, want["train"][1])
    np.testing.assert_array_equal(xte, want["t10k"][0])
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64 and yte.shape == (3,)


def test_truncated_and_wrong_files_name_the_file(tmp_path):
    make_fake_mnist(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    blob = images.read_bytes()
    for cut in (0, 3, 9, 16, len(blob) - 1):
        images.write_bytes(blob[:cut])
        with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
            load_mnist(tmp_path)
    images.write_bytes(blob + b"\0")
    with pytest.raises(ValueError, match="trailing"):
        load_mnist(tmp_path)
    # a labels file where the images belong: wrong magic number
    labels_blob = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    images.write_bytes(labels_blob)
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        load_mnist(tmp_path)
    # images of the wrong size
    write_idx(images, np.zeros((5, 14, 14), np.uint8))
    with pytest.raises(ValueError, match="dimensions"):
        load_mnist(tmp_path)


def test_cut_gzip_stream_is_a_clear_error(tmp_path):
    make_fake_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path)


def test_search_order_and_missing_files(tmp_path, monkeypatch):
    env, cache = tmp_path / "env", tmp_path / "cache"
    (env / "mnist").mkdir(parents=True)
    cache.mkdir()
    from_env = make_fake_mnist(env / "mnist", seed=1)
    from_cache = make_fake_mnist(cache, seed=2)
    monkeypatch.setenv("PYCORE_DATA", str(env))
    np.testing.assert_array_equal(load_mnist(cache_dir=cache)[0][0], from_env["train"][0])
    monkeypatch.delenv("PYCORE_DATA")
    np.testing.assert_array_equal(load_mnist(cache_dir=cache)[0][0], from_cache["train"][0])
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(tmp_path / "nowhere", cache_dir=tmp_path / "empty")


def test_download_verification_on_local_files(tmp_path):
    """The checksum check of download_mnist, with file:// mirrors (never the network)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    good = mirror / "a.gz"
    good.write_bytes(b"payload")
    digest = hashlib.md5(b"payload").hexdigest()
    target = tmp_path / "cache"
    datasets.download_mnist(target, mirrors=(mirror.as_uri() + "/",), files={"a.gz": digest})
    assert (target / "a.gz").read_bytes() == b"payload"
    # a mirror serving different bytes: refused, nothing left behind
    bad_target = tmp_path / "cache2"
    with pytest.raises(OSError, match="does not match"):
        datasets.download_mnist(bad_target, mirrors=(mirror.as_uri() + "/",), files={"a.gz": "0" * 32})
    assert list(bad_target.iterdir()) == []
    # a corrupted file already in the cache is reported, not used
    (target / "a.gz").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="md5"):
        datasets.download_mnist(target, mirrors=(), files={"a.gz": digest})


def test_real_mnist():
    folder = data_path("mnist")
    (xtr, ytr), (xte, yte) = load_mnist(folder)
    assert xtr.shape == (60000, 28, 28) and xte.shape == (10000, 28, 28)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64
    np.testing.assert_array_equal(ytr[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])  # the well-known first labels
    np.testing.assert_array_equal(np.bincount(yte), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    assert xtr[0, 14].tolist()[:10] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] and int(xtr[0].max()) == 255
    assert datasets.mnist_available(folder)


def test_load_digits():
    pytest.importorskip("sklearn")
    x, y = datasets.load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_char_vocab_round_trip():
    text = "To be, or not to be: that is the question.\nÆsop"
    vocab = CharVocab(text)
    assert len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64
    assert vocab.decode(ids) == text
    assert [vocab.chars[i] for i in ids] == list(text)
    assert vocab.chars == sorted(set(text))
    again = CharVocab.from_state_dict(vocab.state_dict())
    np.testing.assert_array_equal(again.encode(text), ids)
    with pytest.raises(ValueError, match="'Z'"):
        vocab.encode("Zebra")
    with pytest.raises(ValueError, match="ids must be"):
        vocab.decode([len(vocab)])


def test_stream_batches_layout():
    ids = np.arange(23)
    streams = StreamBatches(ids, batch_size=3, seq_len=4)
    # S = 23 // 3 = 7 ids per stream: stream b is ids[7b : 7b + 7]; 6 input positions each,
    # targets shifted by one, in chunks of 4 and 2 steps
    chunks = list(streams)
    assert len(streams) == len(chunks) == 2
    assert chunks[0][0].shape == (3, 4) and chunks[1][0].shape == (3, 2)
    x = np.concatenate([c[0] for c in chunks], axis=1)
    y = np.concatenate([c[1] for c in chunks], axis=1)
    for b in range(3):
        np.testing.assert_array_equal(x[b], np.arange(7 * b, 7 * b + 6))
        np.testing.assert_array_equal(y[b], np.arange(7 * b + 1, 7 * b + 7))
    assert x.dtype == np.int64
    with pytest.raises(ValueError, match="too few"):
        StreamBatches(np.arange(5), batch_size=3, seq_len=2)


def test_split_corpus_on_tiny_shakespeare():
    text = data_path("tinyshakespeare", "input.txt").read_text()
    vocab = CharVocab(text)
    assert len(vocab) == 65
    train, val = split_corpus(vocab.encode(text), val_fraction=0.1)
    assert len(train) + len(val) == len(text)
    assert vocab.decode(val[-10:]) == text[-10:]


def test_char_vocab_from_an_iterator_of_chars():
    """chars= may be any iterable: it is read once (reading it twice left an iterator empty)."""
    alphabet = "zyx!"
    vocab = CharVocab(chars=iter(alphabet))
    assert vocab.chars == list(alphabet)
    np.testing.assert_array_equal(vocab.encode("x!z"), [2, 3, 0])


def test_char_vocab_with_lone_surrogates(tmp_path):
    """Text decoded with errors='surrogateescape' holds lone surrogates: they are characters
    like any other, in encode, decode, and a checkpoint of the vocabulary."""
    import pycore
    text = b"ab\xffc\xfe".decode("utf-8", errors="surrogateescape")
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    np.testing.assert_array_equal(ids, [vocab.chars.index(c) for c in text])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("\ud800")
    path = tmp_path / "vocab.safetensors"
    pycore.save(path, {}, vocab=vocab.state_dict())
    assert CharVocab.from_state_dict(pycore.load(path)[1]["vocab"]).encode(text).tolist() == ids.tolist()
