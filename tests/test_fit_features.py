"""fit() options against independent references: metrics (numpy), several inputs, one-shot
generators, gradient accumulation (one larger batch), dtype casting, schedulers inside fit
(a hand-written loop), per-batch callback hooks, checkpoint templates, initial_epoch,
resume failures that change nothing, and clipping with parameters that have no gradient."""
import numpy as np
import pytest

import pycore
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.nn import Parameter
from pycore.serialization import CheckpointError
from pycore.train import Callback, ModelCheckpoint, evaluate, fit


def make_model(seed=0, dtype=np.float32):
    pycore.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16, dtype=dtype), nn.Tanh(), nn.Linear(16, 5, dtype=dtype))


def make_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (np.abs(x[:, :5]).argmax(axis=1)).astype(np.int64)
    return x, y


def weights(model):
    return [p.data.copy() for p in model.parameters()]


def mean_margin(logits, target):
    """A user metric: mean of (target logit - largest other logit)."""
    own = logits[np.arange(len(target)), target]
    other = np.where(np.eye(logits.shape[1], dtype=bool)[target], -np.inf, logits).max(axis=1)
    return float(np.mean(own - other))


def test_metrics_match_numpy_on_train_and_validation():
    """lr=0 keeps the model fixed, so every batch's metric is a function of the data alone;
    batches of 16, 16, 16, 2 check the weighting by batch size."""
    x, y = make_data()
    model = make_model()
    logits = model(x)
    rank = (logits > logits[np.arange(len(y)), y][:, None]).sum(axis=1)
    expect = {"accuracy": np.mean(rank == 0), "top2": np.mean(rank < 2), "mean_margin": mean_margin(logits, y)}
    history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), DataLoader(x, y, batch_size=16),
                  epochs=1, val_loader=DataLoader(x, y, batch_size=7), metrics=["accuracy", "top2", mean_margin],
                  verbose=0)
    for name, value in expect.items():
        np.testing.assert_allclose(history[name], [value], rtol=1e-5)
        np.testing.assert_allclose(history["val_" + name], [value], rtol=1e-5)
    got = evaluate(model, nn.CrossEntropyLoss(), DataLoader(x, y, batch_size=9), metrics=["top2"], return_dict=True)
    np.testing.assert_allclose(got["top2"], expect["top2"])
    for bad, message in (([lambda a, b: 0.0], "lambda"), (["top0"], "unknown metric"), (["loss"], "unknown"),
                         (["accuracy", "accuracy"], "twice")):
        with pytest.raises(ValueError, match=message):
            fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), DataLoader(x, y), 1,
                metrics=bad)


class TwoInputs(nn.Module):
    """model(a, b) = the make_model network on concatenate([a, b], axis=1)."""

    def __init__(self):
        super().__init__()
        self.net = make_model()

    def forward(self, a, b):
        return self.net(np.concatenate([a, b], axis=1))

    def backward(self, grad):
        return self.net.backward(grad)


@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_several_inputs_train_like_one_and_count_samples(layout):
    x, y = make_data()
    a, b = x[:, :2].copy(), x[:, 2:].copy()
    loader = (DataLoader(a, b, y, batch_size=16, collate_fn=lambda a, b, y: ((a, b), y)) if layout == "nested"
              else DataLoader(a, b, y, batch_size=16))
    two, one = TwoInputs(), make_model()
    sizes = []

    class Sizes(Callback):
        def on_batch_end(self, trainer, batch, logs):
            sizes.append(logs["size"])

    h2 = fit(two, nn.CrossEntropyLoss(), optim.SGD(two.parameters(), lr=0.1), loader, 2, verbose=0,
             callbacks=[Sizes()])
    h1 = fit(one, nn.CrossEntropyLoss(), optim.SGD(one.parameters(), lr=0.1), DataLoader(x, y, batch_size=16), 2,
             verbose=0)
    assert h2["loss"] == h1["loss"] and sizes == [16, 16, 16, 2] * 2
    np.testing.assert_allclose(np.array(h2["samples_per_s"]) * np.array(h2["time"]), [50, 50])
    for p, q in zip(two.parameters(), one.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_one_shot_generators():
    x, y = make_data()
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1)

    def batches(count=None):
        i = 0
        while count is None or i < count:
            yield x[i % 3 * 16:(i % 3 + 1) * 16], y[i % 3 * 16:(i % 3 + 1) * 16]
            i += 1

    with pytest.raises(TypeError, match="one-shot iterator"):
        fit(model, nn.CrossEntropyLoss(), opt, batches(), 2, verbose=0)
    assert fit(model, nn.CrossEntropyLoss(), opt, batches(3), 1, verbose=0).epochs == 1
    history = fit(model, nn.CrossEntropyLoss(), opt, batches(), 3, steps_per_epoch=4, verbose=0)
    assert history.epochs == 3 and len(history.step_loss) == 12 and np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match="ran out during epoch 2"):
        fit(model, nn.CrossEntropyLoss(), opt, batches(5), 2, steps_per_epoch=4, verbose=0)
    with pytest.raises(ValueError, match="no batches"):
        fit(model, nn.CrossEntropyLoss(), opt, [], 1, verbose=0)
    with pytest.raises(TypeError, match="val_loader is a one-shot"):
        fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y), 3, val_loader=batches(3), verbose=0)
    assert fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y), 3, val_loader=batches(3), initial_epoch=2,
               verbose=0).epochs == 1  # one epoch left: a one-shot validation iterator is enough
    # a re-iterable with steps_per_epoch continues across epochs and restarts when a pass ends
    seen = []

    class Record(Callback):
        def on_batch_begin(self, trainer, batch):
            seen.append(batch)

    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, batch_size=16), 2, steps_per_epoch=3,
                  verbose=0, callbacks=[Record()])
    assert history.epochs == 2 and seen == [1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize("n", [48, 52])
def test_accumulation_equals_one_larger_batch(n):
    """accumulate=4 over batches of 8 == batches of 32 (n=52: the last group has 8+8+4 samples
    and is weighted by its sizes, like the last big batch of 20)."""
    x, y = make_data(n)
    small, big = make_model(), make_model()
    h_small = fit(small, nn.CrossEntropyLoss(), optim.SGD(small.parameters(), lr=0.5, momentum=0.9),
                  DataLoader(x, y, batch_size=8), 3, accumulate=4, verbose=0)
    h_big = fit(big, nn.CrossEntropyLoss(), optim.SGD(big.parameters(), lr=0.5, momentum=0.9),
                DataLoader(x, y, batch_size=32), 3, verbose=0)
    assert len(h_small.step_loss) == len(h_big.step_loss) == 6
    np.testing.assert_allclose(h_small.step_loss, h_big.step_loss, rtol=1e-5)
    for p, q in zip(small.parameters(), big.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-5, atol=1e-6)
    changed = [not np.array_equal(p, q) for p, q in zip(weights(small), weights(make_model()))]
    assert all(changed)


def test_batches_are_cast_to_the_model_dtype():
    x, y = make_data()
    model64, reference = make_model(dtype=np.float64), make_model(dtype=np.float64)
    fit(model64, nn.CrossEntropyLoss(), optim.SGD(model64.parameters(), lr=0.1), DataLoader(x, y, batch_size=16), 1,
        verbose=0)
    fit(reference, nn.CrossEntropyLoss(), optim.SGD(reference.parameters(), lr=0.1),
        DataLoader(x.astype(np.float64), y, batch_size=16), 1, verbose=0)
    for p, q in zip(model64.parameters(), reference.parameters()):
        assert p.data.dtype == np.float64
        np.testing.assert_array_equal(p.data, q.data)


def hand_loop(model, opt, scheduler, loader, val, epochs, interval):
    """The training loop with a scheduler, written out."""
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for xb, yb in loader:
            logits = model(xb)
            loss_fn(logits, yb)
            opt.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            if interval == "step":
                scheduler.step()
        if isinstance(scheduler, optim.ReduceLROnPlateau):
            scheduler.step(evaluate(model, loss_fn, val)[0])
        elif interval == "epoch":
            scheduler.step()


@pytest.mark.parametrize("kind", ["step", "epoch", "plateau"])
def test_scheduler_inside_fit_equals_the_hand_loop(kind):
    x, y = make_data()
    val = DataLoader(x[:20], y[:20], batch_size=10)

    def build(model):
        opt = optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
        if kind == "step":
            return opt, optim.OneCycleLR(opt, max_lr=0.5, total_steps=12)
        if kind == "epoch":
            return opt, optim.MultiStepLR(opt, [1, 3], gamma=0.3)
        return opt, optim.ReduceLROnPlateau(opt, patience=0, factor=0.5, threshold=0.2)

    model, reference = make_model(), make_model()
    opt, scheduler = build(model)
    interval = "step" if kind == "step" else "epoch"
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, batch_size=16), 3, val_loader=val,
                  scheduler=scheduler, scheduler_interval=interval, verbose=0)
    ref_opt, ref_scheduler = build(reference)
    hand_loop(reference, ref_opt, ref_scheduler, DataLoader(x, y, batch_size=16), val, 3, interval)
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert scheduler.get_last_lr() == ref_scheduler.get_last_lr()
    assert len(set(history["lr"])) > 1 or kind == "plateau"


def test_callback_hooks_in_order():
    x, y = make_data(n=20)
    calls = []

    class Recorder(Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda trainer, *args: calls.append((name, *[a for a in args if isinstance(a, int)]))
            return object.__getattribute__(self, name)

    model = make_model()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(x, y, batch_size=10), 2,
        callbacks=[Recorder()], verbose=0)
    epoch = [("on_batch_begin", 1), ("on_batch_end", 1), ("on_batch_begin", 2), ("on_batch_end", 2)]
    assert calls == ([("on_train_begin",), ("on_epoch_begin", 1)] + epoch + [("on_epoch_end", 1), ("on_checkpoint", 1)]
                     + [("on_epoch_begin", 2)] + epoch + [("on_epoch_end", 2), ("on_checkpoint", 2), ("on_train_end",)])


def test_checkpoint_template_checked_before_training(tmp_path):
    for template, message in (("ep{epoch", "malformed"), ("ep{0}", "plain name"), ("ep{epoch.real}", "plain name"),
                              ("ep{loss:d}", "cannot be formatted"), ("ep{epoch:.2f}x{step:q}", "cannot be formatted")):
        with pytest.raises(ValueError, match=message):
            ModelCheckpoint(str(tmp_path / template))
    x, y = make_data(n=20)
    model = make_model()
    before = weights(model)
    with pytest.raises(ValueError, match="val_loader"):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(x, y), 1, verbose=0,
            callbacks=[ModelCheckpoint(str(tmp_path / "ep{epoch:02d}-{val_loss:.3f}.safetensors"))])
    assert all(np.array_equal(p, q) for p, q in zip(before, weights(model)))  # failed before any step
    ckpt = ModelCheckpoint(str(tmp_path / "ep{epoch:02d}-{loss:.3f}-{top2:.2f}.safetensors"), monitor="loss")
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(x, y), 4, verbose=0,
        callbacks=[ckpt], metrics=["top2"], initial_epoch=2)
    assert [p.split("/")[-1][:5] for p in ckpt.saved] == ["ep03-", "ep04-"]


def test_failed_resume_changes_nothing(tmp_path):
    x, y = make_data()
    model = make_model()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "ckpt.safetensors"
    fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, batch_size=16), 1, verbose=0,
        callbacks=[ModelCheckpoint(str(path), monitor="loss")])
    fresh = make_model(seed=1)
    fresh_opt = optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    before = weights(fresh)
    with pytest.raises(CheckpointError, match="scheduler"):
        fit(fresh, nn.CrossEntropyLoss(), fresh_opt, DataLoader(x, y, seed=0), 3, resume=path, verbose=0,
            scheduler=optim.StepLR(fresh_opt, 1))
    with pytest.raises(ValueError, match="initial_epoch=2"):
        fit(fresh, nn.CrossEntropyLoss(), fresh_opt, DataLoader(x, y, seed=0), 3, resume=path, initial_epoch=2, verbose=0)
    fresh = make_model(seed=1)
    fresh_opt = optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(x[:10], y[:10], batch_size=16)  # fewer batches than the checkpoint's loader
    loader_state = loader.state_dict()
    bad_loader_state = pycore.serialization.read_checkpoint(path)[2]["loader_state"]
    bad_loader_state["batches_done"] = 3
    with pytest.raises(ValueError):
        loader.load_state_dict(bad_loader_state)
    assert loader.state_dict() == loader_state
    other = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4))  # a different head
    other_before = weights(other)
    rng_before = pycore.get_rng_state()
    with pytest.raises(ValueError, match="size mismatch"):
        fit(other, nn.CrossEntropyLoss(), optim.SGD(other.parameters(), lr=0.1, momentum=0.9), DataLoader(x, y, seed=0),
            3, resume=path, verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(other_before, weights(other)))
    assert all(np.array_equal(p, q) for p, q in zip(before, weights(fresh)))
    assert pycore.get_rng_state() == rng_before and fresh_opt.state == {}


class WithUnused(nn.Module):
    """make_model's network plus a parameter that no backward touches (grad None)."""

    def __init__(self):
        super().__init__()
        self.net = make_model()
        self.unused = Parameter(np.ones(3, np.float32))
        self.unused.grad = None

    def forward(self, x):
        return self.net(x)

    def backward(self, grad):
        return self.net.backward(grad)


def test_fit_clips_and_checks_with_a_parameter_without_gradient():
    x, y = make_data()
    model, reference = WithUnused(), make_model()
    for clip in (0.05, None):
        fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.5), DataLoader(x, y, batch_size=16), 1,
            clip_grad_norm=clip, verbose=0)
        fit(reference, nn.CrossEntropyLoss(), optim.SGD(reference.parameters(), lr=0.5),
            DataLoader(x, y, batch_size=16), 1, clip_grad_norm=clip, verbose=0)
        for p, q in zip(model.net.parameters(), reference.parameters()):
            np.testing.assert_array_equal(p.data, q.data)
    assert model.unused.grad is None and np.all(model.unused.data == 1)
