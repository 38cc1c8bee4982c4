"""Data-parallel throughput over MPI: LeNet-5 on MNIST and the char-LSTM, ranks x threads.

    python benchmarks/bench_distributed.py                 # 1x1, 2x1, 1x2 (ranks x threads), markdown table
    python benchmarks/bench_distributed.py --configs 1x1,2x1,4x1,8x1,16x1 --steps 60

Each configuration is one `mpiexec -n RANKS python bench_distributed.py --worker ...` run
(1 rank: plain python) with OMP_NUM_THREADS=THREADS. The global batch is fixed (LeNet 64,
char-LSTM 32 streams x 100 characters), each rank taking its share, so every row does the
same arithmetic per step, and the same steps (tests/test_distributed.py checks the
weights). After --warmup steps, --steps steps are timed on every rank (slowest rank counts).
"in MPI" is the share of a step that rank 0 spent inside MPI calls in backward: the
transfer plus the wait for the slowest rank. "one all-reduce" is the median time of a
blocking all-reduce of all the gradient bytes between ranks that start together: the
pure transfer cost, the term of the scaling model in docs/benchmarks.md ("Data parallelism over MPI").
Data: $PYCORE_DATA/mnist (else synthetic images of MNIST's shape).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pycore  # noqa: E402
import pycore.distributed as dist  # noqa: E402
from pycore import nn, optim  # noqa: E402
from pycore.data import DataLoader  # noqa: E402
from pycore.datasets import StreamBatches  # noqa: E402
from pycore.train import CharModel  # noqa: E402

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
LENET_BATCH, LSTM_STREAMS, LSTM_SEQ, LSTM_VOCAB = 64, 32, 100, 65


def lenet_images():
    from pycore.examples.lenet import mnist_dataset
    folder = pathlib.Path(os.environ.get("PYCORE_DATA", DEFAULT_DATA)) / "mnist"
    try:
        (x, y), _, _ = mnist_dataset(str(folder))
    except (FileNotFoundError, OSError):
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((8192, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, 8192)
    return x, y


def time_steps(model, step, batches, warmup, steps):
    """Seconds for `steps` steps after `warmup` (until the slowest rank is done); the MPI seconds in them."""
    for _ in range(warmup):
        step(next(batches))
    dist.barrier()
    model.communication_seconds = 0.0
    started = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    dist.barrier()  # the slowest rank's time
    return time.perf_counter() - started, model.communication_seconds


def allreduce_milliseconds(nbytes, repeats=30):
    """Median time of one in-place all-reduce of `nbytes` of float32 between synchronised ranks
    (0 in a world of one): the pure transfer cost, without the wait for a slower rank."""
    if dist.world_size() == 1:
        return 0.0
    from mpi4py import MPI
    comm, buffer, times = dist.world._current().comm, np.ones(nbytes // 4, dtype=np.float32), []
    for _ in range(repeats):
        comm.Barrier()
        started = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buffer)
        times.append(time.perf_counter() - started)
    return 1e3 * float(np.median(times))


def bench_lenet(warmup, steps):
    from pycore.examples.lenet import build_lenet
    x, y = lenet_images()
    model = dist.DistributedDataParallel(build_lenet())
    model.requires_input_grad = False
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    sampler = dist.DistributedSampler(len(x), seed=0)
    loader = DataLoader(x, y, batch_size=LENET_BATCH // dist.world_size(), sampler=sampler, drop_last=True)

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    def step(batch):
        loss_fn(model(batch[0]), batch[1])
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optimizer.step()

    seconds, comm = time_steps(model, step, batches(), warmup, steps)
    grad_bytes = sum(p.grad.nbytes for p in model.parameters())
    return {"model": "LeNet-5", "unit": "images/s", "rate": steps * LENET_BATCH / seconds,
            "step_ms": 1e3 * seconds / steps, "comm_share": comm / seconds, "grad_bytes": grad_bytes,
            "allreduce_ms": allreduce_milliseconds(grad_bytes)}


def bench_lstm(warmup, steps):
    ids = np.random.default_rng(0).integers(0, LSTM_VOCAB, 400_000)
    model = dist.DistributedDataParallel(CharModel(LSTM_VOCAB, 256, 2, 64))
    optimizer = optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    streams = StreamBatches(dist.shard_stream(ids, LSTM_STREAMS), LSTM_STREAMS // dist.world_size(), LSTM_SEQ)

    def batches():
        while True:
            yield from streams

    def step(batch):
        logits, _ = model(batch[0])
        loss_fn(logits, batch[1])
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optim.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    seconds, comm = time_steps(model, step, batches(), warmup, steps)
    grad_bytes = sum(p.grad.nbytes for p in model.parameters())
    return {"model": "char-LSTM", "unit": "chars/s", "rate": steps * LSTM_STREAMS * LSTM_SEQ / seconds,
            "step_ms": 1e3 * seconds / steps, "comm_share": comm / seconds, "grad_bytes": grad_bytes,
            "allreduce_ms": allreduce_milliseconds(grad_bytes)}


def worker(args):
    dist.init()
    pycore.manual_seed(0)
    results = []
    if "lenet" in args.models:
        results.append(bench_lenet(args.warmup, args.steps))
    if "lstm" in args.models:
        results.append(bench_lstm(args.warmup, max(1, args.steps // 4)))
    if dist.is_main():
        for r in results:
            r.update(ranks=dist.world_size(), threads=pycore.get_num_threads())
            print("RESULT " + json.dumps(r), flush=True)


def run_config(ranks, threads, args):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--models", args.models,
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if ranks > 1:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        command = [mpiexec if os.access(mpiexec, os.X_OK) else "mpiexec", "-n", str(ranks)] + command
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
    return [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="1x1,2x1,1x2", help="comma-separated RANKSxTHREADS")
    p.add_argument("--models", default="lenet,lstm")
    p.add_argument("--steps", type=int, default=100, help="timed LeNet steps (char-LSTM: a quarter)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for config in args.configs.split(","):
        ranks, threads = (int(v) for v in config.lower().split("x"))
        rows += run_config(ranks, threads, args)
        print(f"done {config}", file=sys.stderr, flush=True)
    base = {r["model"]: r["rate"] for r in rows if r["ranks"] == 1 and r["threads"] == 1}
    print("| model | ranks x threads | throughput | vs 1x1 | step (ms) | in MPI (share of step) | "
          "one all-reduce of all gradients (ms) | gradient bytes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['rate'] / base[r['model']]:.2f}x" if r["model"] in base else "-"
        print(f"| {r['model']} | {r['ranks']} x {r['threads']} | {r['rate']:,.0f} {r['unit']} | {ratio} | "
              f"{r['step_ms']:.1f} | {100 * r['comm_share']:.0f}% | {r['allreduce_ms']:.2f} | {r['grad_bytes']:,} |")


if __name__ == "__main__":
    main()
