"""Training targets: the same models, hyperparameters, initial weights and batch order in
pycore and PyTorch, in one run, on the same number of threads. Prints markdown tables.

    python benchmarks/train_targets.py                       # LeNet-5 on MNIST (2 epochs) + char-LSTM (500 steps)
    python benchmarks/train_targets.py --steps 100 --epochs 1 --threads 2
    python benchmarks/train_targets.py --only lenet --long   # + the >= 99.0% LeNet-5 recipe (10 epochs)
    python benchmarks/train_targets.py --separate --pairs 3 --isa avx2   # each library in its own process

Without --separate both libraries run in this one process (LeNet-5's epochs interleaved).
With it, each run is a fresh process of one library (pycore, PyTorch, pycore, ...), round i
with seed --seed + i for both, so that two OpenMP pools never share the process and the
accuracy is a mean over seeds; times are medians over the rounds.
    python benchmarks/train_targets.py --isa avx2            # pycore and PyTorch both on AVX2 (benchmarks/isa.py)

Targets (issue 5): LeNet-5, batch 64, SGD lr 0.05 momentum 0.9, 2 epochs: pycore's test
accuracy within 0.5 points of PyTorch's, and its epoch time at most 1/1.5 of PyTorch's.
Char-LSTM (2 x 256, seq 100, batch 32, Adam 2e-3) on tiny Shakespeare: validation loss after
500 steps within 0.05 nats/char of PyTorch's, and >= 1.3x PyTorch's training chars/s.
Data: $PYCORE_DATA (mnist/, tinyshakespeare/input.txt), default ../shared/data.
"""
import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # benchmarks/isa.py
import isa  # noqa: E402

# every library reads its instruction set when it loads: set it before they are imported
ISA = isa.isa_from_argv(sys.argv[1:])
isa.restrict(ISA)

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import pycore  # noqa: E402
from pycore import nn, optim  # noqa: E402
from pycore.data import DataLoader  # noqa: E402
from pycore.datasets import CharVocab, StreamBatches, split_corpus  # noqa: E402
from pycore.examples.lenet import build_lenet, mnist_dataset  # noqa: E402
from pycore.train import CharModel, evaluate, evaluate_char_model, fit, train_char_model  # noqa: E402

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def data_dir():
    return pathlib.Path(os.environ.get("PYCORE_DATA", DEFAULT_DATA))


# ---------------------------------------------------------------------------------------------
# LeNet-5 on MNIST
# ---------------------------------------------------------------------------------------------
def torch_lenet(torch, model):
    """torch's LeNet-5 with the same layers and a copy of the pycore model's weights."""
    tnn = torch.nn
    net = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                         tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                         tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return net


def torch_train_epoch(torch, net, opt, loader):
    net.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in loader:
        logits = net(torch.from_numpy(x))
        loss = loss_fn(logits, torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def torch_accuracy(torch, net, x, y):
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(torch.from_numpy(x[i:i + 1000])).argmax(1).numpy() == y[i:i + 1000]).sum())
                      for i in range(0, len(x), 1000))
    return correct / len(x)


def lenet_setup(args, seed):
    """MNIST, the seeded initial LeNet-5 and a loader whose batch order depends on the seed only,
    so a pycore run and a PyTorch run with one seed start from the same weights and batches."""
    (x_train, y_train), (x_test, y_test), _ = mnist_dataset(data_dir() / "mnist")
    if args.train_samples:
        x_train, y_train = x_train[:args.train_samples], y_train[:args.train_samples]
    pycore.manual_seed(seed)
    model = build_lenet()
    loader = DataLoader(x_train, y_train, batch_size=64, shuffle=True, seed=seed)
    return model, loader, (x_test, y_test)


def lenet_pycore_epoch(model, opt, loader, args):
    return fit(model, nn.CrossEntropyLoss(), opt, loader, 1, verbose=args.verbose)["time"][-1]


def lenet_pycore_accuracy(model, test):
    return evaluate(model, nn.CrossEntropyLoss(), DataLoader(*test, batch_size=1000))[1]


def run_lenet(library, torch, args, seed):
    """One library's LeNet-5 run: {"epoch_times": [...], "accuracy": a, "samples": n}."""
    model, loader, test = lenet_setup(args, seed)
    times = []
    if library == "pycore":
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(args.epochs):
            times.append(lenet_pycore_epoch(model, opt, loader, args))
        accuracy = lenet_pycore_accuracy(model, test)
    else:
        net = torch_lenet(torch, model)  # the same initial weights
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        for _ in range(args.epochs):
            times.append(torch_train_epoch(torch, net, opt, loader))
        accuracy = torch_accuracy(torch, net, *test)
    return {"epoch_times": times, "accuracy": accuracy, "samples": loader.num_samples}


def bench_lenet(torch, args):
    model, loader, test = lenet_setup(args, args.seed)
    net = torch_lenet(torch, model)  # same initial weights
    # the same batch order for both: two loaders with one seed
    torch_loader = DataLoader(*loader.arrays, batch_size=64, shuffle=True, seed=args.seed)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    t_opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    p_times, t_times = [], []
    for epoch in range(args.epochs):  # interleaved: one epoch of each, so both see the same machine load
        p_times.append(lenet_pycore_epoch(model, opt, loader, args))
        t_times.append(torch_train_epoch(torch, net, t_opt, torch_loader))
        print(f"  epoch {epoch + 1}: pycore {p_times[-1]:.1f} s, PyTorch {t_times[-1]:.1f} s", file=sys.stderr)
    report_lenet(torch, args, loader.num_samples, [lenet_pycore_accuracy(model, test)],
                 [torch_accuracy(torch, net, *test)], p_times, t_times, "one process, epochs interleaved")


def report_lenet(torch, args, samples, p_accs, t_accs, p_times, t_times, how):
    p_acc, t_acc = float(np.mean(p_accs)), float(np.mean(t_accs))
    p_epoch, t_epoch = float(np.median(p_times)), float(np.median(t_times))
    seeds = f"mean of {len(p_accs)} seeds" if len(p_accs) > 1 else "one seed"
    print(f"\n### LeNet-5 on MNIST ({samples} training images), batch 64, SGD lr 0.05 momentum 0.9, "
          f"{args.epochs} epochs, {args.threads} threads ({how})\n")
    print(f"| | test accuracy ({seeds}) | epoch time (median) | samples/s |")
    print("|---|---|---|---|")
    print(f"| pycore | {100 * p_acc:.2f}% | {p_epoch:.2f} s | {samples / p_epoch:,.0f} |")
    print(f"| PyTorch {torch.__version__} | {100 * t_acc:.2f}% | {t_epoch:.2f} s | {samples / t_epoch:,.0f} |")
    print(f"| pycore vs PyTorch | {100 * (p_acc - t_acc):+.2f} points (target within 0.5) | "
          f"{t_epoch / p_epoch:.2f}x as fast (target >= 1.5x) | |")


class RandomShift:
    """Batches of `loader` with each image moved by up to `pixels` in x and y (filled with the background): the
    classic MNIST augmentation. Deterministic for a seed."""

    def __init__(self, loader, pixels=2, seed=0):
        self.loader, self.pixels, self.rng = loader, pixels, np.random.default_rng(seed)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        p = self.pixels
        for x, y in self.loader:
            n, _, h, w = x.shape
            padded = np.full((n, 1, h + 2 * p, w + 2 * p), x.min(), x.dtype)  # the background value
            padded[:, :, p:p + h, p:p + w] = x
            dy, dx = self.rng.integers(0, 2 * p + 1, size=(2, n))
            rows = dy[:, None] + np.arange(h)[None, :]
            cols = dx[:, None] + np.arange(w)[None, :]
            yield padded[np.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None], y


def bench_lenet_99(args):
    """A recipe of our choice that reaches >= 99.0% test accuracy within 10 epochs (pycore only):
    SGD with momentum, weight decay, a cosine schedule and random shifts of up to 2 pixels."""
    (x_train, y_train), (x_test, y_test), _ = mnist_dataset(data_dir() / "mnist")
    pycore.manual_seed(args.seed)
    model = build_lenet()
    epochs, lr = 10, 0.02
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    schedule = optim.CosineAnnealingLR(opt, T_max=epochs)
    loader = RandomShift(DataLoader(x_train, y_train, batch_size=64, shuffle=True, seed=args.seed), 2, args.seed)
    test_loader = DataLoader(x_test, y_test, batch_size=1000)
    start, reached = time.perf_counter(), None
    accuracies = []
    for epoch in range(1, epochs + 1):
        fit(model, nn.CrossEntropyLoss(), opt, loader, 1, verbose=args.verbose)
        schedule.step()
        accuracies.append(evaluate(model, nn.CrossEntropyLoss(), test_loader)[1])
        print(f"  epoch {epoch}: test accuracy {100 * accuracies[-1]:.2f}%", file=sys.stderr)
        if reached is None and accuracies[-1] >= 0.99:
            reached = epoch
    wall = time.perf_counter() - start
    print(f"\n### LeNet-5 to 99%: SGD lr {lr}, momentum 0.9, weight decay 5e-4, cosine schedule over "
          f"{epochs} epochs, batch 64, random shifts of up to 2 pixels, {args.threads} threads\n")
    print("| epochs | final test accuracy | best | first epoch >= 99.0% | wall time |")
    print("|---|---|---|---|---|")
    print(f"| {epochs} | {100 * accuracies[-1]:.2f}% | {100 * max(accuracies):.2f}% | {reached or 'not reached'} "
          f"| {wall:.0f} s |")


# ---------------------------------------------------------------------------------------------
# char-LSTM on tiny Shakespeare
# ---------------------------------------------------------------------------------------------
def torch_char_model(torch, model):
    tnn = torch.nn

    class TorchChar(tnn.Module):
        def __init__(self):
            super().__init__()
            self.embed = tnn.Embedding(model.embed.num_embeddings, model.embed.embedding_dim)
            self.lstm = tnn.LSTM(model.lstm.input_size, model.lstm.hidden_size, model.lstm.num_layers,
                                 batch_first=True)
            self.head = tnn.Linear(model.lstm.hidden_size, model.vocab_size)

        def forward(self, ids, state=None):
            y, state = self.lstm(self.embed(ids), state)
            return self.head(y), state

    net = TorchChar()
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return net


def torch_char_val_loss(torch, net, ids, batch_size, seq_len):
    net.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in StreamBatches(ids, batch_size, seq_len):
            logits, state = net(torch.from_numpy(x), state)
            total += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                       torch.from_numpy(y).reshape(-1)).item() * y.size
            count += y.size
    net.train()
    return total / count


def torch_char_train(torch, net, ids, steps, batch_size, seq_len, lr, clip):
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    streams = StreamBatches(ids, batch_size, seq_len)
    step, chars, train_time = 0, 0, 0.0
    while step < steps:
        state = None
        for x, y in streams:
            if step >= steps:
                break
            started = time.perf_counter()
            logits, state = net(torch.from_numpy(x), state)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     torch.from_numpy(y).reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            state = tuple(s.detach() for s in state)
            train_time += time.perf_counter() - started
            chars += y.size
            step += 1
    return chars / train_time


CHAR_CONFIG = dict(batch=32, seq=100, hidden=256, layers=2, lr=2e-3, clip=5.0)


def run_char(library, torch, args, seed):
    """One library's char-LSTM run: {"chars_per_s": r, "val_loss": v}."""
    c = CHAR_CONFIG
    text = (data_dir() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    vocab = CharVocab(text)
    train_ids, val_ids = split_corpus(vocab.encode(text), val_fraction=0.1)
    pycore.manual_seed(seed)
    model = CharModel(len(vocab), c["hidden"], c["layers"], embedding_dim=64)
    if library == "pycore":
        history = train_char_model(model, train_ids, None, steps=args.steps, batch_size=c["batch"],
                                   seq_len=c["seq"], lr=c["lr"], clip_grad_norm=c["clip"], verbose=args.verbose)
        return {"chars_per_s": history["chars_per_s"],
                "val_loss": evaluate_char_model(model, val_ids, c["batch"], c["seq"])}
    net = torch_char_model(torch, model)  # the same initial weights
    rate = torch_char_train(torch, net, train_ids, args.steps, c["batch"], c["seq"], c["lr"], c["clip"])
    return {"chars_per_s": rate, "val_loss": torch_char_val_loss(torch, net, val_ids, c["batch"], c["seq"])}


def bench_char(torch, args):
    p = run_char("pycore", torch, args, args.seed)
    print(f"  pycore: {p['chars_per_s']:,.0f} chars/s, val {p['val_loss']:.4f}", file=sys.stderr)
    t = run_char("torch", torch, args, args.seed)
    print(f"  PyTorch: {t['chars_per_s']:,.0f} chars/s, val {t['val_loss']:.4f}", file=sys.stderr)
    report_char(torch, args, [p], [t], "one process, one after the other")


def report_char(torch, args, p_runs, t_runs, how):
    c = CHAR_CONFIG
    p_val, t_val = (float(np.mean([r["val_loss"] for r in runs])) for runs in (p_runs, t_runs))
    p_rate, t_rate = (float(np.median([r["chars_per_s"] for r in runs])) for runs in (p_runs, t_runs))
    print(f"\n### char-LSTM on tiny Shakespeare: embedding 64, {c['layers']} x LSTM {c['hidden']}, seq {c['seq']}, "
          f"batch {c['batch']}, Adam {c['lr']}, clip {c['clip']}, {args.steps} steps, {args.threads} threads ({how})\n")
    print("| | validation loss (nats/char) | training chars/s (median) |")
    print("|---|---|---|")
    print(f"| pycore | {p_val:.4f} | {p_rate:,.0f} |")
    print(f"| PyTorch {torch.__version__} | {t_val:.4f} | {t_rate:,.0f} |")
    print(f"| pycore vs PyTorch | {p_val - t_val:+.4f} (target within 0.05) | {p_rate / t_rate:.2f}x (target >= 1.3x) |")


# ---------------------------------------------------------------------------------------------
# --separate: each library alone in its own process
# ---------------------------------------------------------------------------------------------
RUNS = {"lenet": run_lenet, "char": run_char}


def run_child(spec, torch, args):
    """--child BENCH:LIBRARY:SEED: one library's run, printed as one JSON line."""
    bench, library, seed = spec.split(":")
    print(json.dumps(RUNS[bench](library, torch, args, int(seed))))


def separate_runs(bench, args):
    """args.pairs rounds of (pycore, torch), each in a fresh process with the same --isa and
    threads; round i uses seed args.seed + i for both. Returns ([pycore results], [torch results])."""
    results = {"pycore": [], "torch": []}
    passed = [a for a in sys.argv[1:] if a not in ("--separate",)]
    for i in range(args.pairs):
        for library in results:
            command = [sys.executable, os.path.abspath(__file__), *passed,
                       "--child", f"{bench}:{library}:{args.seed + i}"]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{bench} {library} process failed:\n{done.stderr[-2000:]}")
            results[library].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {bench} round {i + 1} {library}: {results[library][-1]}", file=sys.stderr)
    return results["pycore"], results["torch"]


def bench_separately(torch, args):
    how = f"each library in its own process, alternated, {args.pairs} rounds"
    if args.only in (None, "lenet"):
        p, t = separate_runs("lenet", args)
        report_lenet(torch, args, p[0]["samples"], [r["accuracy"] for r in p], [r["accuracy"] for r in t],
                     [float(np.mean(r["epoch_times"])) for r in p], [float(np.mean(r["epoch_times"])) for r in t], how)
    if args.only in (None, "char"):
        p, t = separate_runs("char", args)
        report_char(torch, args, p, t, how)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["lenet", "char", "none"], help="run one benchmark ('none' with --long: only the 99%% recipe)")
    p.add_argument("--epochs", type=int, default=2, help="LeNet-5 epochs (target: 2)")
    p.add_argument("--train-samples", type=int, help="use only the first N MNIST training images")
    p.add_argument("--steps", type=int, default=500, help="char-LSTM steps (target: 500)")
    p.add_argument("--long", action="store_true", help="also train LeNet-5 to >= 99%% (10 epochs)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--isa", choices=isa.CHOICES, default="native",
                   help="run pycore and torch on this instruction set (see benchmarks/isa.py)")
    p.add_argument("--separate", action="store_true",
                   help="each library alone in a fresh process, alternated for --pairs rounds (seeds seed..seed+pairs-1)")
    p.add_argument("--pairs", type=int, default=3, help="--separate: rounds of (pycore, PyTorch)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # BENCH:LIBRARY:SEED, a --separate worker
    args = p.parse_args(argv)
    import torch
    isa.check(args.isa)
    torch.set_num_threads(args.threads)
    pycore.set_num_threads(args.threads)
    if args.child:
        return run_child(args.child, torch, args)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores; "
          f"{args.threads} threads for both; pycore {pycore.__version__}, torch {torch.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}")
    for line in isa.report(args.isa):
        print(line)
    if args.separate:
        bench_separately(torch, args)
    elif args.only in (None, "lenet"):
        bench_lenet(torch, args)
    if args.long:
        bench_lenet_99(args)
    if args.only in (None, "char") and not args.separate:
        bench_char(torch, args)


if __name__ == "__main__":
    main()
