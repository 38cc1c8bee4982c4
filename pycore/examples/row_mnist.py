"""Row-by-row MNIST: an LSTM reads each image as a sequence of 28 rows of 28 pixels.

    python -m pycore.examples.row_mnist --data ~/mnist            # full MNIST, 4 epochs
    python -m pycore.examples.row_mnist --data ~/mnist --torch    # and PyTorch's time per epoch

A classic sequence benchmark: the network sees one row per step, so it has to carry what
it read in its state for up to 28 steps before the last state decides the digit:

    image (N, 28, 28) = 28 steps of 28 pixels -> LSTM(28, 128) -> h_n (N, 128) -> Linear -> 10 logits

Adam with the learning rate annealed along a cosine to 0 over all steps, gradients clipped
to norm 1. With --torch a torch.nn.LSTM + Linear twin starts from the same weights (copied
through state_dict) and trains on the same batches with the same optimizer settings; the
two take turns batch by batch (so load on a shared machine falls on both alike), each
library's steps are timed, and both times per epoch are printed.

MNIST comes from --data DIR, $PYCORE_DATA/mnist or the cache (~/.cache/pycore/mnist);
without it the example runs offline on scikit-learn's 8x8 digits read as 8 rows of 8.
"""
import argparse
import time

import numpy as np

import pycore
from pycore import functional as F
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.datasets import load_digits, load_mnist, mnist_available
from pycore.examples import add_run_options, start_run

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class LastStateModel(nn.Module):
    """A recurrent layer, then a Linear head on its top layer's last hidden state:
    (N, T, features) (or (T, N, features) for a layer without batch_first) -> (N, outputs).

    Parameter names are those of a `torch.nn.Module` with attributes `rnn` and `head`
    (rnn.weight_ih_l0, ..., head.weight, head.bias), so state_dicts load either way.
    """

    def __init__(self, rnn, outputs):
        super().__init__(rnn.dtype)
        if rnn.bidirectional:  # h_n[-1] would be the reverse direction's state alone
            raise ValueError("LastStateModel: expected a one-direction RNN/LSTM/GRU, got bidirectional=True "
                             "(see pycore.examples.text_classifier for both directions' final states)")
        self.rnn = rnn
        self.head = nn.Linear(rnn.hidden_size, outputs, dtype=rnn.dtype)

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        return self.head(F.select(h_n, 0, -1))  # forward only: backward comes from the tape


def row_dataset(data=None, digits=False, seed=0):
    """((x_train, y_train), (x_test, y_test), name): float32 (N, rows, pixels) standardised images.

    MNIST when found (data, $PYCORE_DATA/mnist, the cache) and digits is False; otherwise
    scikit-learn's digits (8 rows of 8), split 80/20 with a seeded shuffle.
    """
    if not digits and (data is not None or mnist_available()):
        (x_train, y_train), (x_test, y_test) = load_mnist(data)
        def scale(x):
            return ((x.astype(np.float32) / 255.0 - MNIST_MEAN) / MNIST_STD).astype(np.float32)

        return (scale(x_train), y_train), (scale(x_test), y_test), "MNIST"
    images, labels = load_digits()
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(0.8 * len(images))
    train, test = order[:cut], order[cut:]
    mean, std = images[train].mean(), images[train].std()
    x = ((images - mean) / std).astype(np.float32)
    name = "scikit-learn digits" if digits else "scikit-learn digits (MNIST not found)"
    return (x[train], labels[train]), (x[test], labels[test]), name


class PycoreTrainer:
    """One optimizer step per call on a pycore model: Adam, cosine-annealed rate, clipping."""

    def __init__(self, model, lr, total_steps, clip):
        self.model, self.clip = model, clip
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = optim.Adam(model.parameters(), lr=lr)
        self.scheduler = optim.CosineAnnealingLR(self.optimizer, T_max=total_steps)
        model.requires_input_grad = False  # the pixels need no gradient

    def step(self, x, y):
        self.model.train()
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(x), y)
        self.model.backward(self.loss_fn.backward())
        optim.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss

    def predict(self, x):
        self.model.eval()
        with pycore.no_grad():
            return self.model(x).argmax(axis=1)


class TorchTrainer:
    """The same model, optimizer, schedule and clipping in PyTorch, from a pycore model's weights,
    on as many threads as pycore."""

    def __init__(self, pycore_model, lr, total_steps, clip):
        import torch
        self.torch, self.clip = torch, clip
        torch.set_num_threads(pycore.get_num_threads())
        hidden = pycore_model.rnn.hidden_size
        self.rnn = torch.nn.LSTM(pycore_model.rnn.input_size, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, pycore_model.head.out_features)
        self.model = torch.nn.ModuleDict({"rnn": self.rnn, "head": self.head})  # pycore's state_dict keys
        self.model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in pycore_model.state_dict().items()})
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total_steps)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def _logits(self, x):
        _, (h_n, _) = self.rnn(self.torch.from_numpy(x))
        return self.head(h_n[-1])

    def step(self, x, y):
        self.model.train()
        self.optimizer.zero_grad()
        loss = self.loss_fn(self._logits(x), self.torch.from_numpy(y))
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss.item()

    def predict(self, x):
        self.model.eval()
        with self.torch.no_grad():
            return self._logits(x).argmax(dim=1).numpy()


def accuracy(trainer, x, y, batch_size=1000):
    correct = sum(int(np.sum(trainer.predict(x[i:i + batch_size]) == y[i:i + batch_size]))
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train(trainers, train_loader, x_test, y_test, epochs, say=print):
    """Train each of {name: trainer} for `epochs` over train_loader, in lockstep: every batch
    goes to each trainer in turn, so a busy machine slows them alike. Returns
    {name: [(seconds, mean loss, test accuracy)] per epoch}; the seconds count that
    trainer's steps only (the test pass is outside them)."""
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trainers}
    for epoch in range(1, epochs + 1):
        seconds = dict.fromkeys(trainers, 0.0)
        losses: dict[str, list[float]] = {name: [] for name in trainers}
        for x, y in train_loader:
            for name, trainer in trainers.items():
                start = time.perf_counter()
                losses[name].append(trainer.step(x, y))
                seconds[name] += time.perf_counter() - start
        for name, trainer in trainers.items():
            results[name].append((seconds[name], float(np.mean(losses[name])), accuracy(trainer, x_test, y_test)))
            say(f"  {name} epoch {epoch}: {seconds[name]:.1f} s, loss {results[name][-1][1]:.4f}, "
                f"test accuracy {100 * results[name][-1][2]:.2f}%", flush=True)
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.row_mnist", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="DIR", help="folder with the MNIST IDX files (default: $PYCORE_DATA/mnist, cache)")
    p.add_argument("--digits", action="store_true", help="use scikit-learn's digits even if MNIST is available")
    p.add_argument("--epochs", type=int, help="passes over the training data (default: 4 on MNIST, 30 on digits)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's initial learning rate (cosine-annealed to 0)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    p.add_argument("--torch", action="store_true",
                   help="also train a PyTorch twin from the same weights on the same batches; print both epoch times")
    p.add_argument("--limit", type=int, help="use only the first LIMIT training and test images (a quick run)")
    add_run_options(p)
    return p.parse_args(argv)


def main(argv=None):
    """Returns {"pycore": per-epoch results, "torch": per-epoch results or None, "dataset": name}."""
    args = parse_args(argv)
    start_run(args)
    (x_train, y_train), (x_test, y_test), dataset = row_dataset(args.data, args.digits, args.seed)
    if args.limit:
        keep = slice(args.limit)
        x_train, y_train, x_test, y_test = x_train[keep], y_train[keep], x_test[keep], y_test[keep]
    epochs = args.epochs or (4 if dataset == "MNIST" else 30)
    steps, pixels = x_train.shape[1:]
    loader = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    total_steps = epochs * len(loader)
    print(f"Row-by-row {dataset}: {len(x_train)} training and {len(x_test)} test images as {steps} steps of "
          f"{pixels} pixels; LSTM({pixels}, {args.hidden}) -> Linear({args.hidden}, 10); {epochs} epochs, batch "
          f"{args.batch_size}, Adam lr {args.lr} cosine-annealed, clip {args.clip}, "
          f"{pycore.get_num_threads()} threads", flush=True)

    model = LastStateModel(nn.LSTM(pixels, args.hidden, batch_first=True), 10)
    trainers: dict[str, PycoreTrainer | TorchTrainer] = {
        "pycore": PycoreTrainer(model, args.lr, total_steps, args.clip)}
    if args.torch:  # built before training, so it starts from the same weights
        trainers["torch"] = TorchTrainer(model, args.lr, total_steps, args.clip)
    results = train(trainers, loader, x_test, y_test, epochs)
    for name, per_epoch in results.items():
        print(f"{name}: test accuracy {100 * per_epoch[-1][2]:.2f}% after {epochs} epochs, "
              f"{np.median([r[0] for r in per_epoch]):.1f} s per epoch (median)")
    if args.torch:
        ratios = [t[0] / p[0] for p, t in zip(results["pycore"], results["torch"])]
        print(f"torch time / pycore time per epoch: {', '.join(f'{r:.2f}' for r in ratios)} "
              f"(interleaved batch by batch, {pycore.get_num_threads()} threads each)")
    results.setdefault("torch", None)
    results["dataset"] = dataset
    return results


if __name__ == "__main__":
    main()
