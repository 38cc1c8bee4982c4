"""fit(): history against a hand-written loop, early stopping, checkpoints, non-finite losses,
Ctrl-C during a step, progress output, and resume in a new process (bit for bit)."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pycore
from conftest import child_process_env
from pycore import nn
from pycore.data import DataLoader
from pycore.train import EarlyStopping, ModelCheckpoint, NonFiniteLossError, fit, restore_training_state


# -- test-local pieces: a loss, an optimizer and an activation written out in numpy, so these
#    tests exercise fit() itself whatever other parts of pycore have landed ----------------------
HELPERS = '''
import numpy as np
from pycore import nn


class SoftmaxCrossEntropy:
    """mean over the batch of -log softmax(logits)[target]; backward: (softmax - onehot) / N."""

    def __call__(self, logits, target):
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.saved = (np.exp(logp), target)
        return float(-logp[np.arange(len(target)), target].mean())

    def backward(self):
        p, target = self.saved
        grad = p.copy()
        grad[np.arange(len(target)), target] -= 1
        return (grad / len(target)).astype(p.dtype)


class MomentumSGD:
    """v = mu v + g; w -= lr v (PyTorch's SGD with momentum), with a checkpointable state."""

    def __init__(self, params, lr, momentum=0.9):
        self.params, self.lr, self.momentum = list(params), lr, momentum
        self.velocity = [np.zeros_like(p.data) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    def step(self):
        for p, v in zip(self.params, self.velocity):
            v *= self.momentum
            v += p.grad
            p.data -= self.lr * v

    def state_dict(self):
        return {"state": {i: {"momentum_buffer": v} for i, v in enumerate(self.velocity)},
                "param_groups": [{"lr": self.lr, "momentum": self.momentum}]}

    def load_state_dict(self, state):
        for i, v in enumerate(self.velocity):
            v[...] = state["state"][i]["momentum_buffer"]
        self.lr = state["param_groups"][0]["lr"]


class Tanh(nn.Module):
    def forward(self, x):
        y = np.tanh(x)
        self._save_for_backward(y)
        return y

    def backward(self, grad):
        (y,) = self._pop_saved()
        return grad * (1 - y * y)


def make_model():
    return nn.Sequential(nn.Linear(6, 16), Tanh(), nn.Linear(16, 3))


def make_data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    return x, y
'''
exec(HELPERS)  # noqa: S102 - the same source runs in the subprocesses of the resume test


def reference_training(model, opt, loss_fn, loader, epochs):
    """The loop written out by hand: per-epoch mean loss (weighted by batch size) and accuracy."""
    losses, accs = [], []
    for _ in range(epochs):
        total, correct, n = 0.0, 0, 0
        for x, y in loader:
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            total += loss * len(x)
            correct += int((logits.argmax(1) == y).sum())
            n += len(x)
        losses.append(total / n)
        accs.append(correct / n)
    return losses, accs


def test_history_matches_a_hand_written_loop():
    x, y = make_data()
    pycore.manual_seed(1)
    model = make_model()
    pycore.manual_seed(1)
    ref_model = make_model()
    history = fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.1),
                  DataLoader(x, y, batch_size=16, shuffle=True, seed=4), epochs=3,
                  val_loader=DataLoader(x[:32], y[:32], batch_size=10))
    losses, accs = reference_training(ref_model, MomentumSGD(ref_model.parameters(), 0.1),
                                      SoftmaxCrossEntropy(),
                                      DataLoader(x, y, batch_size=16, shuffle=True, seed=4), 3)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-6)
    np.testing.assert_allclose(history["accuracy"], accs)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    # validation: the trained model on x[:32], computed directly
    logits = ref_model(x[:32])
    np.testing.assert_allclose(history["val_loss"][-1], SoftmaxCrossEntropy()(logits, y[:32]), rtol=1e-5)
    np.testing.assert_allclose(history["val_accuracy"][-1], np.mean(logits.argmax(1) == y[:32]))
    assert set(history) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "samples_per_s"}
    assert history.epochs == 3 and all(t > 0 for t in history["time"])
    assert model.training and model.requires_input_grad is False
    assert history["loss"][-1] < history["loss"][0]


def test_early_stopping_stops_and_restores_best():
    x, y = make_data()
    model = make_model()
    stopper = EarlyStopping(monitor="val_loss", patience=1)
    history = fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.0),
                  DataLoader(x, y, batch_size=32), epochs=10, val_loader=DataLoader(x, y, batch_size=32),
                  callbacks=[stopper])
    # lr 0: val_loss never improves after epoch 1 -> stop after the first epoch without improvement
    assert history.epochs == 2 and stopper.stopped_epoch == 2 and stopper.best_epoch == 1


class ScriptedTrainer:
    """What EarlyStopping sees of a run whose val_loss follows a script."""

    def __init__(self):
        self.model = make_model()
        self.stop_training = False
        self.epoch = 0


def test_early_stopping_rules_and_restore_best():
    trainer = ScriptedTrainer()
    stopper = EarlyStopping(monitor="val_loss", patience=2, min_delta=0.05, restore_best=True)
    stopper.on_train_begin(trainer)
    weights_at = {}
    for epoch, val in enumerate([1.0, 0.8, 0.78, 0.9, 0.7], start=1):
        trainer.model[0].weight.data[...] = epoch
        weights_at[epoch] = epoch
        trainer.epoch = epoch
        stopper.on_epoch_end(trainer, epoch, {"val_loss": val})
        if trainer.stop_training:
            break
    # 0.78 is not better than 0.8 by more than 0.05; 0.9 neither -> stop after epoch 4
    assert trainer.stop_training and stopper.stopped_epoch == 4 and stopper.best_epoch == 2
    stopper.on_train_end(trainer)
    assert np.all(trainer.model[0].weight.data == 2)
    with pytest.raises(ValueError, match="val_loader"):
        EarlyStopping().on_epoch_end(trainer, 1, {"loss": 1.0})
    acc = EarlyStopping(monitor="val_accuracy")
    acc.on_train_begin(trainer)
    acc.on_epoch_end(trainer, 1, {"val_accuracy": 0.5})
    assert acc.best == 0.5  # mode auto -> max for accuracies


class NanAt:
    """SoftmaxCrossEntropy that returns NaN on the k-th call (1-based)."""

    def __init__(self, k):
        self.k, self.calls, self.inner = k, 0, SoftmaxCrossEntropy()

    def __call__(self, logits, target):
        self.calls += 1
        loss = self.inner(logits, target)
        return float("nan") if self.calls == self.k else loss

    def backward(self):
        return self.inner.backward()


def test_nonfinite_loss_names_epoch_and_step_and_keeps_weights():
    x, y = make_data(n=64)
    pycore.manual_seed(2)
    model = make_model()
    pycore.manual_seed(2)
    ref = make_model()
    ref_opt = MomentumSGD(ref.parameters(), 0.1)
    loader = DataLoader(x, y, batch_size=16)  # 4 steps an epoch; NaN on call 7 = epoch 2, step 3
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, step 3 \(optimizer step 7\)"):
        fit(model, NanAt(7), MomentumSGD(model.parameters(), 0.1), loader, epochs=3)
    ce = SoftmaxCrossEntropy()
    for i, (xb, yb) in enumerate(list(loader) + list(loader)[:2]):  # the 6 steps before the NaN
        ce(ref(xb), yb)
        ref_opt.zero_grad()
        ref.backward(ce.backward())
        ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_nonfinite_skip_skips_that_update():
    x, y = make_data(n=64)
    pycore.manual_seed(3)
    model = make_model()
    pycore.manual_seed(3)
    ref = make_model()
    loader = DataLoader(x, y, batch_size=16)
    history = fit(model, NanAt(2), MomentumSGD(model.parameters(), 0.1), loader, epochs=1,
                  on_nonfinite="skip")
    assert history["skipped"] == [1]
    batches = list(loader)
    ref_opt, ce = MomentumSGD(ref.parameters(), 0.1), SoftmaxCrossEntropy()
    for xb, yb in [batches[0]] + batches[2:]:
        ce(ref(xb), yb)
        ref_opt.zero_grad()
        ref.backward(ce.backward())
        ref_opt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_nan_gradient_is_caught_before_the_step():
    class NanGrad(SoftmaxCrossEntropy):
        def backward(self):
            g = super().backward()
            g[0, 0] = np.nan
            return g

    x, y = make_data(n=32)
    model = make_model()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(NonFiniteLossError, match="gradient is NaN or Inf at epoch 1, step 1"):
        fit(model, NanGrad(), MomentumSGD(model.parameters(), 0.1), DataLoader(x, y, batch_size=8), 1)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


def test_ctrl_c_during_a_step_is_held_until_the_step_ends():
    class InterruptedSGD(MomentumSGD):
        def step(self):
            for i, (p, v) in enumerate(zip(self.params, self.velocity)):
                if i == 1:
                    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C halfway through the update
                v *= self.momentum
                v += p.grad
                p.data -= self.lr * v

    x, y = make_data(n=32)
    model = make_model()
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(KeyboardInterrupt):
        fit(model, SoftmaxCrossEntropy(), InterruptedSGD(model.parameters(), 0.1),
            DataLoader(x, y, batch_size=32), epochs=2)
    changed = [not np.array_equal(p.data, b) for p, b in zip(model.parameters(), before)]
    assert all(changed), "every parameter got its update before the interrupt was raised"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_output(capsys):
    x, y = make_data(n=32)
    model = make_model()
    fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.1), DataLoader(x, y, batch_size=8), 2,
        verbose=0)
    assert capsys.readouterr().out == ""  # verbose=0: silent
    for verbose in (None, True, 2):  # not a terminal: one line per epoch (a batch job's log)
        fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.1), DataLoader(x, y, batch_size=8), 2,
            verbose=verbose, val_loader=DataLoader(x, y, batch_size=8), metrics=["accuracy", "top2"])
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "samples/s" in lines[1]
        assert " acc " in lines[1] and " top2 " in lines[1] and "val_top2" in lines[1] and "val_loss" in lines[1]


def test_learning_curve_png(tmp_path):
    pytest.importorskip("matplotlib")
    x, y = make_data(n=32)
    model = make_model()
    path = tmp_path / "curve.png"
    fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.1), DataLoader(x, y, batch_size=8), 2,
        val_loader=DataLoader(x, y, batch_size=8), plot=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_checkpoint_best_only(tmp_path):
    x, y = make_data()
    model = make_model()
    ckpt = ModelCheckpoint(tmp_path / "best-{epoch}.safetensors", monitor="loss", save_best_only=True)
    fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.05), DataLoader(x, y, batch_size=16),
        epochs=3, callbacks=[ckpt])
    assert [os.path.basename(p) for p in ckpt.saved] == [f"best-{e}.safetensors" for e in (1, 2, 3)]
    state, meta = pycore.load(ckpt.saved[-1])
    assert meta["epoch"] == 3 and meta["step"] == 18 and len(meta["history"]["epochs"]["loss"]) == 3
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(state[k], v)


def test_model_checkpoint_never_saves_nan_weights(tmp_path):
    x, y = make_data(n=32)
    model = make_model()
    path = tmp_path / "ckpt.safetensors"
    ckpt = ModelCheckpoint(path, monitor="loss")
    trainer = pycore.train.Trainer(model, None, MomentumSGD(model.parameters(), 0.1), DataLoader(x, y),
                                   pycore.train.History())
    ckpt.on_epoch_end(trainer, 1, {"loss": 1.0})
    ckpt.on_checkpoint(trainer, 1, {"loss": 1.0})
    good = path.read_bytes()
    model[2].bias.data[1] = np.nan
    with pytest.raises(NonFiniteLossError, match="2.bias"):
        ckpt.on_epoch_end(trainer, 2, {"loss": 0.5})
    ckpt.on_checkpoint(trainer, 2, {"loss": 0.5})
    assert path.read_bytes() == good


def test_bad_arguments():
    x, y = make_data(n=8)
    model = make_model()
    opt = MomentumSGD(model.parameters(), 0.1)
    with pytest.raises(ValueError, match="on_nonfinite"):
        fit(model, SoftmaxCrossEntropy(), opt, DataLoader(x, y), 1, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        fit(model, SoftmaxCrossEntropy(), opt, DataLoader(x, y), 1, metrics=("f1",))
    with pytest.raises(ValueError, match="epochs"):
        fit(model, SoftmaxCrossEntropy(), opt, DataLoader(x, y), -1)
    with pytest.raises(ValueError, match="each batch must be"):
        fit(model, SoftmaxCrossEntropy(), opt, DataLoader(x), 1)


RESUME_SCRIPT = HELPERS + textwrap.dedent('''
    import json, sys
    import pycore
    from pycore import optim
    from pycore.data import DataLoader
    from pycore.train import EarlyStopping, ModelCheckpoint, fit

    epochs, folder, resume = int(sys.argv[1]), sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
    pycore.manual_seed(0 if resume is None else 12345)  # a resumed process starts from another state
    model = nn.Sequential(nn.Linear(6, 16), Tanh(), nn.Dropout(0.2), nn.Linear(16, 3))  # dropout: pycore's RNG
    x, y = make_data(n=80)
    jitter = lambda xb, rng: xb + rng.normal(0, 0.05, xb.shape).astype(xb.dtype)   # augmentation
    loader = DataLoader(x, y, batch_size=16, shuffle=True, seed=3, transform=jitter)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = optim.OneCycleLR(opt, max_lr=0.3, total_steps=4 * 5)
    stopper = EarlyStopping(monitor="val_loss", patience=10)
    every = ModelCheckpoint("ep{epoch}-{val_loss:.4f}.safetensors")   # relative to the run's folder
    best = ModelCheckpoint("best.safetensors", monitor="val_accuracy", save_best_only=True)
    history = fit(model, SoftmaxCrossEntropy(), opt, loader, epochs=epochs, verbose=0,
                  val_loader=DataLoader(x[:40], y[:40], batch_size=20), metrics=["accuracy", "top2"],
                  scheduler=scheduler, scheduler_interval="step", callbacks=[stopper, every, best],
                  resume=resume, plot=folder + "/curve.png")
    pycore.save(folder + "/final.safetensors", model)
    json.dump({"history": {k: v for k, v in history.items() if k not in ("time", "samples_per_s")},
               "step_loss": history.step_loss, "saved": every.saved, "best_saved": best.saved,
               "best": best.state_dict()["best"], "stopper": [stopper.best, stopper.best_epoch, stopper.wait]},
              open(folder + "/result.json", "w"))
''')


def test_resume_in_new_processes_equals_one_run(tmp_path):
    """4 epochs in one process == 2 epochs, then resume to 3, then resume to 4 (each a new
    process): weights bit for bit, checkpoint file names and contents, history, per-step
    loss, callback states, the best checkpoint and the plot. With dropout, a shuffled and
    augmented loader, a per-step OneCycleLR, and SGD momentum."""
    import importlib.util
    import json
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = child_process_env()
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    straight.mkdir(), pieces.mkdir()

    def run(folder, *args):
        subprocess.run([sys.executable, str(script), *args[:1], str(folder), *args[1:]], check=True, env=env,
                       timeout=120, cwd=folder)
        return json.loads((folder / "result.json").read_text())

    whole = run(straight, "4")
    run(pieces, "2")
    after2 = sorted(os.listdir(pieces))
    checkpoint2 = [n for n in after2 if n.startswith("ep2-")][0]
    run(pieces, "3", str(pieces / checkpoint2))
    checkpoint3 = [n for n in os.listdir(pieces) if n.startswith("ep3-")][0]
    resumed = run(pieces, "4", str(pieces / checkpoint3))
    assert resumed == whole
    assert len(whole["history"]["loss"]) == 4 and whole["history"]["epoch"] == [1, 2, 3, 4]
    assert len(whole["step_loss"]) == 20 and len(whole["history"]["top2"]) == 4
    assert sorted(os.listdir(pieces)) == sorted(os.listdir(straight))
    timings = ("time", "samples_per_s")  # the only values that differ between runs
    for name in os.listdir(straight):
        if name.endswith(".safetensors"):
            (ours, ours_opt, ours_meta), (theirs, theirs_opt, theirs_meta) = (
                pycore.serialization.read_checkpoint(folder / name) for folder in (straight, pieces))
            for key in ours:
                assert ours[key].tobytes() == theirs[key].tobytes(), (name, key)
            for meta in (ours_meta, theirs_meta):
                for key in timings:
                    meta.get("history", {}).get("epochs", {}).pop(key, None)
                    meta.get("logs", {}).pop(key, None)
            assert repr(ours_meta) == repr(theirs_meta) and repr(ours_opt) == repr(theirs_opt), name
    if importlib.util.find_spec("matplotlib") is not None:  # fit draws the curve only with matplotlib
        assert (straight / "curve.png").read_bytes() == (pieces / "curve.png").read_bytes()
    meta = pycore.load(pieces / [n for n in os.listdir(pieces) if n.startswith("ep4-")][0])[1]
    assert meta["epoch"] == 4 and meta["step"] == 20


def test_clip_grad_norm_rescales_before_the_step():
    """fit(clip_grad_norm=c) == the hand loop with the global-norm clip written in numpy."""
    x, y = make_data()
    pycore.manual_seed(4)
    model = make_model()
    pycore.manual_seed(4)
    ref = make_model()
    fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.5), DataLoader(x, y, batch_size=16),
        epochs=1, clip_grad_norm=0.05)
    opt, ce = MomentumSGD(ref.parameters(), 0.5), SoftmaxCrossEntropy()
    clipped = 0
    for xb, yb in DataLoader(x, y, batch_size=16):
        ce(ref(xb), yb)
        opt.zero_grad()
        ref.backward(ce.backward())
        norm = np.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in ref.parameters()))
        if norm > 0.05:
            clipped += 1
            for p in ref.parameters():
                p.grad *= np.float32(0.05 / (norm + 1e-6))
        opt.step()
    assert clipped > 0
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-7)


def test_fit_with_pycore_losses_and_optimizers_resumes_exactly(tmp_path):
    """nn.CrossEntropyLoss + optim.Adam: 2 epochs == 1 epoch, checkpoint, restore into fresh
    objects, 1 more epoch (in-process version of the subprocess test, with Adam's moments)."""
    x, y = make_data()

    def setup():
        pycore.manual_seed(5)
        model = make_model()
        return model, pycore.optim.Adam(model.parameters(), lr=0.01), DataLoader(x, y, batch_size=16, shuffle=True)

    model, opt, loader = setup()
    fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=2)
    model2, opt2, loader2 = setup()
    path = tmp_path / "ckpt.safetensors"
    fit(model2, nn.CrossEntropyLoss(), opt2, loader2, epochs=1, callbacks=[ModelCheckpoint(path, monitor="loss")])
    model3, opt3, loader3 = setup()
    meta = restore_training_state(path, model3, opt3, loader3)
    fit(model3, nn.CrossEntropyLoss(), opt3, loader3, epochs=2 - meta["epoch"])
    for p, q in zip(model.parameters(), model3.parameters()):
        assert p.data.tobytes() == q.data.tobytes()


def test_plain_progress_bar_on_a_terminal(monkeypatch):
    """On a terminal without tqdm: one line redrawn with carriage returns, then the epoch summary."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm -> ImportError
    x, y = make_data(n=32)
    model = make_model()
    fit(model, SoftmaxCrossEntropy(), MomentumSGD(model.parameters(), 0.1), DataLoader(x, y, batch_size=8), 1)
    out = screen.getvalue()
    assert out.startswith("\repoch 1/1 ") and "4/4 [====================]" in out
    assert "samples/s" in out and out.endswith("s)\n")
