"""Checkpoints: round trip, safetensors layout, corrupted and foreign files, atomic writes,
and SIGKILL during repeated saves."""
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import pycore
from conftest import child_process_env
from pycore import nn
from pycore.serialization import CheckpointError, load, load_safetensors, save, save_safetensors



class TwoDtypes(nn.Module):
    """A model with a float32 layer, a float64 layer and an int64 buffer."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2, dtype=np.float64)
        self.register_buffer("counts", np.arange(5, dtype=np.int64))


def optimizer_state(rng):
    """Shaped like a PyTorch optimizer state_dict: int keys, a tuple, arrays, numbers, None."""
    return {"state": {0: {"step": 3, "exp_avg": rng.standard_normal((4, 3)).astype(np.float32)},
                      1: {"step": 3, "exp_avg": rng.standard_normal(4).astype(np.float32)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                              "amsgrad": False, "foreach": None, "params": [0, 1]}]}


class DictOptimizer:
    def __init__(self, state=None):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


def make_checkpoint(path, rng):
    model = TwoDtypes()
    opt = DictOptimizer(optimizer_state(rng))
    save(path, model, opt, epoch=2, step=40, rng_state=pycore.get_rng_state(),
         hparams={"lr": 0.05, "sizes": [3, 4, 2]}, mask=np.array([True, False]))
    return model, opt


def assert_same_tree(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_tree(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_tree(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_round_trip_model_optimizer_metadata(tmp_path, rng):
    path = tmp_path / "ckpt.safetensors"
    model, opt = make_checkpoint(path, rng)
    fresh, fresh_opt = TwoDtypes(), DictOptimizer()
    assert not np.array_equal(fresh.a.weight.data, model.a.weight.data)
    meta = load(path, fresh, fresh_opt)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert k == k2 and v.dtype == v2.dtype
        np.testing.assert_array_equal(v, v2)
    assert_same_tree(opt.state, fresh_opt.state)
    assert meta["epoch"] == 2 and meta["step"] == 40
    assert meta["hparams"] == {"lr": 0.05, "sizes": [3, 4, 2]}
    assert_same_tree(meta["mask"], np.array([True, False]))
    pycore.set_rng_state(meta["rng_state"])  # the generator state survives as plain values

    state_dict, meta2 = load(path)
    assert list(state_dict) == ["a.weight", "a.bias", "b.weight", "b.bias", "counts"]
    assert state_dict["b.weight"].dtype == np.float64 and state_dict["counts"].dtype == np.int64
    # numpy's canonical dtype objects (the C++ bindings compare dtypes by identity)
    assert all(v.dtype is np.dtype(v.dtype.type) for v in state_dict.values())
    assert meta2["epoch"] == 2


def test_file_is_plain_safetensors(tmp_path, rng):
    """Parse the layout by hand, as the safetensors spec describes it."""
    path = tmp_path / "ckpt.safetensors"
    model, _ = make_checkpoint(path, rng)
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    assert (8 + n) % 8 == 0
    entry = header["a.weight"]
    assert entry["dtype"] == "F32" and entry["shape"] == [4, 3]
    begin, end = entry["data_offsets"]
    got = np.frombuffer(blob[8 + n + begin:8 + n + end], dtype="<f4").reshape(4, 3)
    np.testing.assert_array_equal(got, model.a.weight.data)
    assert header["b.weight"]["dtype"] == "F64" and header["counts"]["dtype"] == "I64"
    assert all(isinstance(v, str) for v in header["__metadata__"].values())
    # the tensors are the model's state_dict alone; optimizer and metadata arrays are in the JSON
    assert set(header) - {"__metadata__"} == set(model.state_dict())


def test_pytorch_safetensors_reads_it(tmp_path, rng):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "ckpt.safetensors"
    model, _ = make_checkpoint(path, rng)
    tensors = safetensors_torch.load_file(str(path))
    np.testing.assert_array_equal(tensors["a.weight"].numpy(), model.a.weight.data)


def test_plain_safetensors_is_not_a_checkpoint_but_readable(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_safetensors(path, {"w": np.ones((2, 2), np.float32)}, {"note": "hi"})
    tensors, meta = load_safetensors(path)
    np.testing.assert_array_equal(tensors["w"], np.ones((2, 2)))
    assert meta == {"note": "hi"}
    with pytest.raises(CheckpointError, match="not a pycore checkpoint"):
        load(path)


def test_truncated_at_every_region_raises(tmp_path, rng):
    path = tmp_path / "ckpt.safetensors"
    make_checkpoint(path, rng)
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    cuts = sorted(set(list(range(0, 16)) + list(range(n - 8, n + 16)) + list(range(16, len(blob), 97))
                      + [len(blob) - 1]))
    cut_path = tmp_path / "cut.safetensors"
    for cut in cuts:
        cut_path.write_bytes(blob[:cut])
        with pytest.raises(CheckpointError, match="cut.safetensors"):
            load(cut_path)
    cut_path.write_bytes(blob + b"\0" * 8)
    with pytest.raises(CheckpointError, match="trailing"):
        load(cut_path)


def test_every_sampled_bit_flip_is_detected(tmp_path, rng):
    path = tmp_path / "ckpt.safetensors"
    make_checkpoint(path, rng)
    blob = bytearray(path.read_bytes())
    flipped = tmp_path / "flipped.safetensors"
    positions = np.random.default_rng(7).choice(len(blob), size=300, replace=False)
    for pos in positions:
        bad = bytearray(blob)
        bad[pos] ^= 1 << int(pos % 8)
        flipped.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError):
            load(flipped)


def test_pickle_never_runs(tmp_path):
    sentinel = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(sentinel), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weight": Exploit()}))
    with pytest.raises(CheckpointError, match="pickle"):
        load(path)
    assert not sentinel.exists()


def test_zip_and_npz_refused(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(CheckpointError, match="zip"):
        load(path)


def test_json_bomb_and_malformed_headers(tmp_path):
    path = tmp_path / "bad.safetensors"

    def write(header, payload=b""):
        raw = header if isinstance(header, bytes) else json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + payload)

    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="cap"):
        load(path)
    write(b"[" * 200000 + b"]" * 200000)
    with pytest.raises(CheckpointError, match="JSON"):
        load(path)
    entry = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    write({"a": {**entry, "dtype": "Q8"}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="unknown dtype"):
        load(path)
    write({"a": entry, "b": entry}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="overlap"):
        load(path)
    write({"a": {**entry, "data_offsets": [0, 80]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="needs 8 bytes"):
        load(path)
    write({"a": {**entry, "shape": [-2]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="shape"):
        load(path)
    write(b'{"a": 1, "a": 2}')
    with pytest.raises(CheckpointError, match="repeats"):
        load(path)
    write({"__metadata__": {"format": ["pycore"]}})
    with pytest.raises(CheckpointError, match="strings"):
        load(path)


def test_wrong_model_is_a_clear_error(tmp_path, rng):
    path = tmp_path / "ckpt.safetensors"
    make_checkpoint(path, rng)
    other = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="missing key"):
        load(path, other)
    with pytest.raises(ValueError, match="no optimizer state"):
        save(path, TwoDtypes())
        load(path, TwoDtypes(), DictOptimizer())


def test_unsupported_values_rejected_before_writing(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    with pytest.raises(TypeError, match="metadata 'fn'"):
        save(path, TwoDtypes(), fn=print)
    with pytest.raises(TypeError, match="dtype object"):
        save(path, {"w": np.array([None])})
    assert not path.exists() and os.listdir(tmp_path) == []


def temp_files(folder):
    return [n for n in os.listdir(folder) if n.endswith(".pycore-tmp")]


def test_exception_during_save_leaves_old_file(tmp_path, monkeypatch, rng):
    path = tmp_path / "ckpt.safetensors"
    model, _ = make_checkpoint(path, rng)
    before = path.read_bytes()
    model.a.weight.data += 1

    def failing(*args):
        raise OSError(28, "No space left on device")

    for target in ("fsync", "replace"):
        with monkeypatch.context() as m:
            m.setattr(os, target, failing)
            with pytest.raises(OSError, match="No space"):
                save(path, model)
        assert path.read_bytes() == before
        assert temp_files(tmp_path) == []
    load(path, TwoDtypes(), DictOptimizer())


def test_stale_temp_files_are_cleaned(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".ckpt.safetensors.{dead}.abcdef.pycore-tmp"
    alive = tmp_path / f".ckpt.safetensors.{os.getppid()}.abcdef.pycore-tmp"  # another live writer
    other = tmp_path / f".other.safetensors.{dead}.abcdef.pycore-tmp"
    for p in (stale, alive, other):
        p.write_bytes(b"partial")
    save(path, TwoDtypes())
    assert not stale.exists() and alive.exists() and other.exists()


CHILD = r"""
import sys, numpy as np, pycore
from pycore import nn
path = sys.argv[1]
model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 256))   # ~0.5 MB a save
i = 0
while True:
    for p in model.parameters():
        p.data[...] = i
    pycore.save(path, model, epoch=i)
    if i == 0:
        print("ready", flush=True)
    i += 1
"""


def test_sigkill_during_repeated_saves_never_loses_the_checkpoint(tmp_path):
    """Kill a process that saves in a loop at random moments, ~10 s in all: the file at the
    path always loads, and its weights are one complete save (all equal to its epoch)."""
    path = tmp_path / "ckpt.safetensors"
    env = child_process_env()
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + 8.0
    kills, epochs = 0, set()
    while time.monotonic() < deadline or kills < 5:
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env,
                                 cwd=tmp_path)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.0, 0.15)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        kills += 1
        state, meta = load(path)
        epochs.add(meta["epoch"])
        for value in state.values():
            assert np.all(value == meta["epoch"])
    assert kills >= 5 and len(epochs) > 1
    save(path, TwoDtypes())  # the next save removes what the killed ones left
    assert temp_files(tmp_path) == []


# -- the weights are all PyTorch sees; files of the previous layout still load ------------------
def test_pytorch_strict_load_state_dict_with_optimizer_state(tmp_path):
    """A checkpoint saved with its optimizer: safetensors.torch returns the weights alone, so a
    torch model with the same keys loads it strictly; pycore gets the optimizer back."""
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    pycore.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = pycore.optim.Adam(model.parameters(), lr=0.01)
    out = model(np.ones((2, 3), np.float32))
    model.backward(np.ones_like(out))
    opt.step()
    path = tmp_path / "ckpt.safetensors"
    pycore.save(path, model, opt, epoch=1, mask=np.array([True, False]))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    theirs.load_state_dict(safetensors_torch.load_file(str(path)), strict=True)
    np.testing.assert_array_equal(theirs[2].weight.detach().numpy(), model[2].weight.data)
    again = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    again_opt = pycore.optim.Adam(again.parameters(), lr=0.01)
    meta = pycore.load(path, again, again_opt)
    assert meta["epoch"] == 1 and meta["mask"].tolist() == [True, False]
    for p, q in zip(model.parameters(), again.parameters()):
        np.testing.assert_array_equal(opt.state[p]["exp_avg"], again_opt.state[q]["exp_avg"])


def test_file_written_by_the_previous_layout_still_loads():
    """tests/fixtures: written by pycore's writer before this layout (optimizer and metadata
    arrays as 'optimizer/...' and 'metadata/...' tensors). Checked against PyTorch's reader."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = os.path.join(os.path.dirname(__file__), "fixtures", "checkpoint_v1_written_by_pycore_0.safetensors")
    raw = {k: v.numpy() for k, v in safetensors_torch.load_file(path).items()}
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = pycore.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    meta = load(path, model, opt)
    assert meta["epoch"] == 2 and meta["step"] == 7 and meta["rng_state"]["bit_generator"] == "PCG64"
    np.testing.assert_array_equal(meta["mask"], raw["metadata/mask"])
    for i, (key, p) in enumerate(zip(["0.weight", "0.bias", "2.weight", "2.bias"], model.parameters())):
        np.testing.assert_array_equal(p.data, raw[key])
        np.testing.assert_array_equal(opt.state[p]["momentum_buffer"], raw[f"optimizer/state/{i}/momentum_buffer"])


# -- crafted files with a valid checksum ---------------------------------------------------------
def write_crafted(path, tensors, info):
    """A checkpoint whose header says what the test wants, with a correct checksum."""
    save_safetensors(path, tensors, {"format": "pycore", "format_version": "1", "model_keys": json.dumps(list(tensors)),
                                     **info})


def test_crafted_checkpoints_are_checkpoint_errors_without_side_effects(tmp_path):
    path = tmp_path / "crafted.safetensors"
    deep = "[" * 100000 + "]" * 100000
    nested = {"a": 1}
    for _ in range(200):
        nested = {"a": nested}
    cases = [
        ({}, {"metadata": deep}, "malformed pycore metadata"),
        ({}, {"metadata": "{}", "optimizer": deep}, "malformed pycore metadata"),
        ({}, {"metadata": json.dumps({"deep": nested})}, "nested more than"),
        ({}, {"metadata": json.dumps({"a": {"__array__": {"dtype": "F32", "shape": [0, 2**70], "data": ""}}})},
         "too large"),
        ({}, {"metadata": json.dumps({"a": {"__array__": {"dtype": "F32", "shape": [0] + [1] * 99, "data": ""}}})},
         "100 dimensions"),
        ({}, {"metadata": json.dumps({"a": {"__array__": {"dtype": "F32", "shape": [2], "data": "AAAA"}}})},
         "holds 3 bytes"),
        ({}, {"metadata": json.dumps({"a": {"__array__": {"dtype": "O", "shape": [1], "data": ""}}})}, "dtype"),
    ]
    for tensors, info, message in cases:
        write_crafted(path, tensors, info)
        with pytest.raises(CheckpointError, match=message):
            load(path)
    # empty tensors of the header itself, with absurd shapes
    for shape, message in (([0, 2**70], "too large"), ([0] * 100, "100 dimensions")):
        header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header)
        with pytest.raises(CheckpointError, match=f"'w'.*{message}"):
            load_safetensors(path)


@pytest.mark.parametrize("name", ["seed", "random", "default_rng", "PCG64 ", "__class__"])
def test_rng_state_naming_a_function_is_refused_untouched(tmp_path, name):
    """A bit-generator name read from a file is never looked up: np.random.seed is not called,
    numpy's and pycore's generators and the model are unchanged, and the error is a CheckpointError."""
    from pycore.train import restore_training_state
    model = nn.Sequential(nn.Linear(3, 2))
    path = tmp_path / "ckpt.safetensors"
    save(path, model, epoch=1, rng_state={"bit_generator": name, "state": {}})
    np.random.seed(7)
    global_before = np.random.get_state()[1].copy()
    pycore.manual_seed(3)
    target = nn.Sequential(nn.Linear(3, 2))
    weights_before = target[0].weight.data.copy()
    ours_before = pycore.get_rng_state()
    with pytest.raises(CheckpointError, match="bit_generator"):
        restore_training_state(path, target)
    assert np.array_equal(np.random.get_state()[1], global_before)
    assert pycore.get_rng_state() == ours_before
    np.testing.assert_array_equal(target[0].weight.data, weights_before)
    with pytest.raises(ValueError, match="bit_generator"):
        pycore.set_rng_state({"bit_generator": name, "state": {}})
    assert pycore.get_rng_state() == ours_before


# -- all-or-nothing loads ------------------------------------------------------------------------
def test_load_is_all_or_nothing(tmp_path):
    pycore.manual_seed(1)
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opt = pycore.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    out = source(np.ones((2, 3), np.float32))
    source.backward(np.ones_like(out))
    opt.step()
    path = tmp_path / "ckpt.safetensors"
    save(path, source, opt)

    def fresh():
        pycore.manual_seed(2)
        model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        return model, [p.data.copy() for p in model.parameters()]

    # the optimizer's state does not fit (Adam's state into SGD with momentum): weights untouched
    model, before = fresh()
    adam_path = tmp_path / "adam.safetensors"
    adam = pycore.optim.Adam(source.parameters())
    adam.step()
    save(adam_path, source, adam)
    with pytest.raises(ValueError, match="state"):
        load(adam_path, model, pycore.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    assert all(np.array_equal(p.data, b) for p, b in zip(model.parameters(), before))
    # one read-only parameter (the last): nothing is written, not even the first layers
    model, before = fresh()
    model[1].bias.data.flags.writeable = False
    for call in (lambda: load(path, model), lambda: load(path, model, pycore.optim.SGD(model.parameters(), lr=0.1))):
        with pytest.raises(ValueError, match="read-only"):
            call()
        assert all(np.array_equal(p.data, b) for p, b in zip(model.parameters(), before))
    model, _ = fresh()
    load(path, model, pycore.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    saved, _ = load(path)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, saved[key])


# -- concurrent saves ----------------------------------------------------------------------------
def test_threads_saving_to_one_path_all_succeed(tmp_path):
    """Three threads save to the same path 15 times each: every save succeeds, the file is
    one complete save (last one wins), no temp file is left, and no writer deletes another's."""
    import threading
    path = tmp_path / "ckpt.safetensors"
    errors, barrier = [], threading.Barrier(3)

    def writer(value):
        model = {"w": np.full((64, 64), value, np.float32)}
        barrier.wait()
        for i in range(15):
            try:
                save(path, model, writer=value, i=i)
            except Exception as err:  # noqa: BLE001 - collected and reported below
                errors.append(err)

    threads = [threading.Thread(target=writer, args=(v,)) for v in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state, meta = load(path)
    assert np.all(state["w"] == meta["writer"]) and meta["i"] == 14
    assert temp_files(tmp_path) == []


def test_state_too_large_for_the_header_goes_to_tensors_with_a_warning(tmp_path, monkeypatch, rng):
    """Past safetensors' header limit the optimizer/metadata arrays become tensors (the earlier
    layout), with a warning naming the consequence; the file still round-trips."""
    import pycore.serialization as serialization
    monkeypatch.setattr(serialization, "INLINE_BUDGET", 100)
    path = tmp_path / "big.safetensors"
    with pytest.warns(UserWarning, match="strict load_state_dict"):
        model, opt = make_checkpoint(path, rng)
    tensors, _ = load_safetensors(path)
    assert "optimizer/state/0/exp_avg" in tensors and "metadata/mask" in tensors
    again = DictOptimizer()
    meta = load(path, TwoDtypes(), again)
    np.testing.assert_array_equal(again.state["state"][0]["exp_avg"], opt.state["state"][0]["exp_avg"])
    assert meta["mask"].tolist() == [True, False]
