"""Programs that tests/test_distributed.py runs under `mpiexec -n N python mpi_scenarios.py NAME OUT`.

Each writes what it computed to the folder OUT (one .npz per rank) for the test to compare;
train() also runs in the test process itself (a world of one) as the reference.
"""
import os
import sys

import numpy as np

import pycore
import pycore.distributed as dist
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.train import CharModel

STEPS = 3
GLOBAL_BATCH = 8
# (name, model kind, optimizer, dtype): every DDP path (Sequential with overlap, other
# models) under both optimizers and both float types.
CASES = [("cnn_sgd", "cnn", "sgd", np.float32), ("cnn_adam64", "cnn", "adam", np.float64),
         ("lstm_sgd", "lstm", "sgd", np.float32), ("lstm_adam", "lstm", "adam", np.float32)]


def build(kind, dtype):
    """A small CNN (8x8 images, 10 classes) or a char-LSTM (vocabulary 12), seeded per rank
    differently so that only the broadcast from rank 0 can make them agree."""
    pycore.manual_seed(100 + dist.rank())
    if kind == "cnn":
        return nn.Sequential(nn.Conv2d(1, 4, 3, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(36, 16, dtype=dtype), nn.Tanh(), nn.Linear(16, 10, dtype=dtype))
    return CharModel(12, hidden_size=16, num_layers=2, embedding_dim=8, dtype=dtype)


def make_optimizer(name, params):
    if name == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    return optim.Adam(params, lr=0.01)


def batches(kind, dtype, global_batch=GLOBAL_BATCH, epoch=0):
    """This rank's STEPS batches; together over the ranks, the single process' batches."""
    rng = np.random.default_rng(7)
    if kind == "cnn":
        x = rng.standard_normal((40, 1, 8, 8)).astype(dtype)
        y = rng.integers(0, 10, 40)
        sampler = dist.DistributedSampler(len(x), shuffle=True, seed=3)
        sampler.set_epoch(epoch)
        loader = DataLoader(x, y, batch_size=global_batch // dist.world_size(), sampler=sampler)
        return list(loader)[:STEPS]
    ids = dist.shard_stream(rng.integers(0, 12, 400), GLOBAL_BATCH)
    streams = pycore.datasets.StreamBatches(ids, GLOBAL_BATCH // dist.world_size(), seq_len=5)
    return list(streams)[:STEPS]


def train(kind, opt_name, dtype, checkpoint=None, resume=None, global_batch=GLOBAL_BATCH, epoch=0):
    """STEPS steps of DDP training, from scratch or from the checkpoint `resume` (read by rank 0
    only, then broadcast); returns {name: array} of the final weights and optimizer state."""
    module = build(kind, dtype)
    if resume is not None and dist.is_main():
        pycore.load(resume, module)
    model = dist.DistributedDataParallel(module, bucket_cap_mb=0.0005)  # several buckets
    model.requires_input_grad = kind != "cnn"  # the CNN's first layer returns None, as under fit()
    optimizer = make_optimizer(opt_name, model.parameters())
    if resume is not None:
        if dist.is_main():
            pycore.load(resume, optimizer=optimizer)
        dist.broadcast_optimizer_state(optimizer)
    loss_fn = nn.CrossEntropyLoss()
    state = None
    for x, y in batches(kind, dtype, global_batch, epoch):
        if kind == "cnn":
            loss = loss_fn(model(x), y)
        else:
            logits, state = model(x, state)
            loss = loss_fn(logits, y)
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()
    if checkpoint is not None and dist.is_main():
        pycore.save(checkpoint, model, optimizer, step=STEPS)
    out = {f"w.{k}": v.copy() for k, v in model.state_dict().items()}
    for index, entries in optimizer.state_dict()["state"].items():
        out.update({f"opt.{index}.{k}": np.asarray(v) for k, v in entries.items()})
    return out


def scenario_train(out):
    for name, kind, opt_name, dtype in CASES:
        checkpoint = os.path.join(out, f"{name}.safetensors")
        np.savez(os.path.join(out, f"{name}.rank{dist.rank()}.npz"), **train(kind, opt_name, dtype, checkpoint))


RESUMED = [("cnn_sgd", "cnn", "sgd", np.float32), ("cnn_adam64", "cnn", "adam", np.float64)]


def scenario_collectives(out):
    """Raw all-reduce bits on every rank (small: recursive doubling; large: reduce-scatter),
    allreduce_mean, sampler shards of a dataset that the ranks do not divide, and training
    resumed from the 2-rank checkpoints that scenario_train left in `out` (global batch 6)."""
    for name, kind, opt_name, dtype in RESUMED:
        result = train(kind, opt_name, dtype, resume=os.path.join(out, f"{name}.safetensors"), global_batch=6,
                       epoch=1)
        np.savez(os.path.join(out, f"resumed_{name}.rank{dist.rank()}.npz"), **result)
    rng = np.random.default_rng(dist.rank())
    results = {}
    for size in (7, 5000, 300_001):
        for dtype in (np.float32, np.float64):
            grads = rng.standard_normal(size).astype(dtype)
            model = nn.Linear(1, size, bias=False, dtype=dtype)  # one parameter of `size` values
            ddp = dist.DistributedDataParallel(model)
            model.weight.grad[:, 0] = grads
            ddp._start(ddp._buckets)
            ddp._finish()
            results[f"grad_{size}_{np.dtype(dtype).name}"] = model.weight.grad[:, 0].copy()
    try:  # rank 2 builds a different model: every rank must raise, none may hang
        dist.DistributedDataParallel(nn.Linear(3 if dist.rank() == 2 else 2, 2))
        results["mismatch_raised"] = np.array(False)
    except ValueError as err:
        results["mismatch_raised"] = np.array("differs between rank" in str(err))
    results["cpu_share"] = np.array([dist.world._cpu_share(dist.world._current()), len(os.sched_getaffinity(0))])
    results["mean_scalar"] = np.array(dist.allreduce_mean(float(dist.rank()) / 3))
    results["mean_array"] = dist.allreduce_mean(np.arange(3, dtype=np.float32) * dist.rank())
    for drop_last in (False, True):
        sampler = dist.DistributedSampler(10, shuffle=True, seed=5, drop_last=drop_last)
        sampler.set_epoch(2)
        loader = DataLoader(np.arange(10), batch_size=3, sampler=sampler)
        batches = list(loader)
        count = dist.allreduce_mean(len(batches))
        results[f"shard_drop{int(drop_last)}"] = np.concatenate(batches)
        results[f"batches_drop{int(drop_last)}"] = np.array([len(batches), count])
    np.savez(os.path.join(out, f"collectives.rank{dist.rank()}.npz"), **results)


# -- fit(distributed=True) ----------------------------------------------------------------------
FIT_SAMPLES, FIT_VAL_SAMPLES, FIT_BATCH, FIT_SEED = 36, 13, 6, 3  # 36 and 6 divide by 1, 2 and 3 ranks
FIT_EPOCHS = 3  # the plateau scheduler halves the rate for epoch 3


def fit_data():
    """((x, y) training, (x, y) validation): 8x8 images, 10 classes."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((FIT_SAMPLES + FIT_VAL_SAMPLES, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    return (x[:FIT_SAMPLES], y[:FIT_SAMPLES]), (x[FIT_SAMPLES:], y[FIT_SAMPLES:])


def fit_objects():
    """The CNN (rank-dependent seed: only fit's broadcast can make the ranks agree), SGD with
    momentum, a plateau scheduler and early stopping: everything with state that a resume restores."""
    model = build("cnn", np.float32)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)
    return model, optimizer, scheduler, pycore.train.EarlyStopping(patience=3)


def fit_distributed(checkpoints, resume=None, shard_val=True, **fit_args):
    """fit(distributed=True) for FIT_EPOCHS epochs of global batch FIT_BATCH, a checkpoint per epoch
    (template `checkpoints`); returns {name: array} of the weights and the history."""
    (x, y), (xv, yv) = fit_data()
    model, optimizer, scheduler, early = fit_objects()
    train_loader = DataLoader(x, y, batch_size=FIT_BATCH // dist.world_size(),
                              sampler=dist.DistributedSampler(len(x), seed=FIT_SEED))
    val_sampler = dist.DistributedSampler(len(xv), shuffle=False) if shard_val else None
    val_loader = DataLoader(xv, yv, batch_size=4, sampler=val_sampler)
    history = pycore.train.fit(model, nn.CrossEntropyLoss(), optimizer, train_loader, FIT_EPOCHS,
                               val_loader=val_loader,
                               callbacks=[pycore.train.ModelCheckpoint(checkpoints), early], scheduler=scheduler,
                               resume=resume, distributed=True, **{"verbose": 2, **fit_args})
    return history_arrays(model, history)


def history_arrays(model, history):
    out = {f"w.{k}": v.copy() for k, v in model.state_dict().items()}
    out.update({f"h.{k}": np.array(v, dtype=np.float64) for k, v in history.items()})
    out["h.step_loss"] = np.array(history.step_loss)
    return out


def scenario_fit(out):
    """2 ranks: fit with a sharded validation set, checkpoints fit-1, fit-2, fit-3 in `out`;
    then again with 4 batches per optimizer step (the last group of each epoch has 2)."""
    result = fit_distributed(os.path.join(out, "fit-{epoch}.safetensors"))
    np.savez(os.path.join(out, f"fit.rank{dist.rank()}.npz"), **result)
    result = fit_distributed(os.path.join(out, "accumulated-{epoch}.safetensors"), accumulate=4, verbose=0)
    np.savez(os.path.join(out, f"fit_accumulate.rank{dist.rank()}.npz"), **result)


def scenario_fit_resume(out):
    """Resume the 2-rank run's epoch-1 checkpoint on this job's ranks, validation whole on each rank."""
    result = fit_distributed(os.path.join(out, f"resumed{dist.world_size()}-{{epoch}}.safetensors"),
                             resume=os.path.join(out, "fit-1.safetensors"), shard_val=False)
    np.savez(os.path.join(out, f"fit_resume{dist.world_size()}.rank{dist.rank()}.npz"), **result)


def scenario_fit_misuse(out):
    """Each misuse must raise the same kind of error on every rank (none left waiting); a
    non-finite loss on one rank only is raised, or skipped, by all ranks together."""
    (x, y), _ = fit_data()
    loss_fn = nn.CrossEntropyLoss()
    results = {}

    def attempt(name, make_loader, model=None, distributed=True, **fit_args):
        model = model or build("cnn", np.float32)
        optimizer = optim.SGD(model.parameters(), lr=0.1)
        try:
            history = pycore.train.fit(model, loss_fn, optimizer, make_loader(), 1, verbose=0,
                                       distributed=distributed, **fit_args)
            results[name] = np.array(f"ok skipped={history.get('skipped')}")
            results[name + ".weights"] = np.concatenate([v.ravel() for v in model.state_dict().values()])
        except Exception as err:  # noqa: BLE001 - recorded for the test
            results[name] = np.array(f"{type(err).__name__}: {err}")

    attempt("plain_loader", lambda: DataLoader(x, y, batch_size=3, shuffle=True))
    attempt("wrong_replicas", lambda: DataLoader(x, y, batch_size=3, sampler=dist.DistributedSampler(
        len(x), num_replicas=1 if dist.rank() == 1 else 2, rank=0 if dist.rank() == 1 else None)))
    attempt("unequal_lengths", lambda: DataLoader(x[:30 if dist.rank() == 1 else 36], y[:30 if dist.rank() == 1 else 36],
                                                  batch_size=3, sampler=dist.DistributedSampler(30 if dist.rank() == 1 else 36)))
    attempt("wrapped_not_distributed", lambda: DataLoader(x, y, batch_size=3),
            model=dist.DistributedDataParallel(build("cnn", np.float32)), distributed=False)
    x_nan = x.copy()
    x_nan[7] = np.nan  # in one rank's shard only (the sampler puts each sample on one rank)
    sharded = lambda: DataLoader(x_nan, y, batch_size=3, sampler=dist.DistributedSampler(len(x), seed=FIT_SEED))  # noqa: E731
    attempt("nonfinite_raise", sharded)
    attempt("nonfinite_skip", sharded, on_nonfinite="skip")
    clean = lambda: DataLoader(x, y, batch_size=3, sampler=dist.DistributedSampler(len(x), seed=FIT_SEED))  # noqa: E731
    attempt("missing_checkpoint", clean, resume=os.path.join(out, "no-such.safetensors"))
    attempt("unwritable_checkpoint", clean,
            callbacks=[pycore.train.ModelCheckpoint(os.path.join(out, "no-such-folder", "ckpt.safetensors"))])
    np.savez(os.path.join(out, f"misuse.rank{dist.rank()}.npz"), **results)


def scenario_raise_after_init(out):
    """Rank 1 raises while rank 0 waits in a collective: the job must end, not hang."""
    if dist.rank() == 1:
        raise RuntimeError("deliberate failure on rank 1")
    dist.barrier()


def scenario_raise_before_init(out):
    """Rank 1 raises before it joined MPI (rank 0 waits for it in a collective)."""
    if os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK")) == "1":
        raise RuntimeError("deliberate failure on rank 1")
    dist.init()
    dist.barrier()


if __name__ == "__main__":
    name, folder = sys.argv[1], sys.argv[2]
    if name != "raise_before_init":
        dist.init(threads=1)
    globals()[f"scenario_{name}"](folder)
