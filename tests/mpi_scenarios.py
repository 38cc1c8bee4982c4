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
