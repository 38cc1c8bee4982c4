"""Vanishing gradients on the adding problem: a tanh RNN, a ReLU RNN and an LSTM.

    python -m pycore.examples.vanishing_gradients [--out vanishing_gradients.png]

Hochreiter and Schmidhuber's adding problem (1997; in the form of Le et al. 2015): each step
is a pair (value ~ U(0, 1), marker), exactly two steps are marked, one in each half of
the sequence, and the target is the sum of the two marked values. Predicting the mean
(1) everywhere gives the variance of that sum, 2/12 = 0.167, as mean squared error; to do
better a model must carry a value from the first half to the end, T/2 steps or more.

Each model (hidden size --hidden, a Linear head on the last hidden state) trains with Adam
and gradient clipping on fresh batches, at each of --lengths. The PNG shows, at the
longest length, the gradient norm ||dE/dx_t|| of the loss with respect to each input step
(the input gradient that backward returns) before and after training, and the learning
curves at every length. A model "solves" a length when its MSE on 1000 new sequences is
below a tenth of the 0.167 baseline.
"""
import argparse
import time

import numpy as np

import pycore
from pycore import nn, optim
from pycore.examples import add_run_options
from pycore.examples.row_mnist import LastStateModel

BASELINE_MSE = 2 / 12  # the variance of U(0,1) + U(0,1): the error of always predicting 1
SOLVED_BELOW = BASELINE_MSE / 10
MODELS = {"tanh RNN": lambda hidden: nn.RNN(2, hidden, nonlinearity="tanh"),
          "ReLU RNN": lambda hidden: nn.RNN(2, hidden, nonlinearity="relu"),
          "LSTM": lambda hidden: nn.LSTM(2, hidden)}


def adding_batch(rng, steps, batch):
    """(x (steps, batch, 2) float32, target (batch, 1) float32): values in channel 0, the two
    markers in channel 1 (one in each half), target = the sum of the marked values."""
    values = rng.uniform(0.0, 1.0, (steps, batch))
    columns = np.arange(batch)
    first = rng.integers(0, steps // 2, batch)
    second = rng.integers(steps // 2, steps, batch)
    markers = np.zeros((steps, batch))
    markers[first, columns] = markers[second, columns] = 1.0
    target = values[first, columns] + values[second, columns]
    return np.stack([values, markers], axis=2).astype(np.float32), target[:, None].astype(np.float32)


def input_gradient_norms(model, x, target):
    """||dE/dx_t|| for t = 0..T-1 (the norm over the batch and both channels), E = MSE.

    Computed in float64 (the model is cast there and back, exactly): in float32 the norms
    underflow to 0 below 1e-45, which a tanh RNN reaches within 100 steps.
    """
    dtype = model.dtype
    model.to(np.float64)
    loss_fn = nn.MSELoss()
    model.train()
    loss_fn(model(x.astype(np.float64)), target.astype(np.float64))
    grad_x = model.backward(loss_fn.backward())
    model.zero_grad()
    model.to(dtype)
    return np.sqrt(np.sum(grad_x ** 2, axis=(1, 2)))


def test_mse(model, rng, steps, count=1000):
    x, target = adding_batch(rng, steps, count)
    model.eval()
    with pycore.no_grad():
        return float(np.mean((model(x) - target) ** 2))


def train(model, steps, iterations, batch_size, lr, clip, rng):
    """Adam on fresh batches; returns the training MSE of every iteration."""
    loss_fn = nn.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(iterations):
        x, target = adding_batch(rng, steps, batch_size)
        optimizer.zero_grad()
        losses.append(loss_fn(model(x), target))
        model.backward(loss_fn.backward())
        optim.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
    return np.array(losses)


def run(lengths, hidden, iterations, batch_size, lr, clip, seed, say=print):
    """Train every model at every length. Returns {(model name, T): result dict} with keys
    losses, mse, solved, and for the longest T grad_before / grad_after (per-step norms)."""
    results = {}
    longest = max(lengths)
    probe = adding_batch(np.random.default_rng(seed + 1), longest, 256)  # one batch for every gradient probe
    for name, make in MODELS.items():
        for steps in lengths:
            pycore.manual_seed(seed)
            model = LastStateModel(make(hidden), 1)
            rng = np.random.default_rng(seed)
            result = {}
            if steps == longest:
                result["grad_before"] = input_gradient_norms(model, *probe)
            start = time.perf_counter()
            result["losses"] = train(model, steps, iterations, batch_size, lr, clip, rng)
            result["mse"] = test_mse(model, rng, steps)
            result["solved"] = result["mse"] < SOLVED_BELOW
            if steps == longest:
                result["grad_after"] = input_gradient_norms(model, *probe)
            results[name, steps] = result
            say(f"  {name:8s} T={steps:4d}: test MSE {result['mse']:.4f} "
                f"({'solved' if result['solved'] else 'not solved'}; {time.perf_counter() - start:.0f} s)",
                flush=True)
    return results


def plot(results, lengths, path):
    """Gradient norms over t (longest T, before and after training) and the learning curves."""
    try:  # no pyplot: leaves the caller's backend alone
        from matplotlib.figure import Figure
    except ImportError:
        raise SystemExit("vanishing_gradients: the plot needs matplotlib (pip install matplotlib); "
                         "or pass --no-plot") from None
    longest = max(lengths)
    fig = Figure(figsize=(4.2 * (1 + len(lengths)), 3.8))
    axes = fig.subplots(1, 1 + len(lengths))
    colors = dict(zip(MODELS, ("tab:red", "tab:orange", "tab:blue")))
    ax = axes[0]
    for name in MODELS:
        r = results[name, longest]
        ax.semilogy(r["grad_before"], color=colors[name], linestyle=":", label=f"{name}, initial")
        ax.semilogy(r["grad_after"], color=colors[name], label=f"{name}, trained")
    ax.set(title=f"||dE/dx_t||, T = {longest}", xlabel="input step t", ylabel="gradient norm")
    ax.legend(fontsize=7)
    for ax, steps in zip(axes[1:], lengths):
        for name in MODELS:
            losses = results[name, steps]["losses"]
            window = max(1, len(losses) // 50)  # a running mean over 2% of the run
            smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
            ax.plot(smooth, color=colors[name], label=f"{name} ({results[name, steps]['mse']:.4f})")
        ax.axhline(BASELINE_MSE, color="gray", linestyle="--", label="variance baseline")
        ax.set(title=f"adding problem, T = {steps}", xlabel="iteration", ylabel="training MSE",
               ylim=(0, 2.5 * BASELINE_MSE))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.vanishing_gradients",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="vanishing_gradients.png", metavar="FILE.png")
    p.add_argument("--no-plot", action="store_true", help="print the results only")
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 50, 100])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--iterations", type=int, default=2000, help="Adam steps per model and length")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    add_run_options(p)
    return p.parse_args(argv)


def main(argv=None):
    """Returns the results of run()."""
    args = parse_args(argv)
    if args.threads:
        pycore.set_num_threads(args.threads)
    if min(args.lengths) < 2:
        raise SystemExit("vanishing_gradients: --lengths must be at least 2 (one marker in each half)")
    print(f"adding problem, lengths {args.lengths}: tanh RNN, ReLU RNN and LSTM with {args.hidden} hidden units, "
          f"{args.iterations} Adam steps (lr {args.lr}, batch {args.batch_size}, clip {args.clip}); "
          f"solved = test MSE below {SOLVED_BELOW:.4f} (the baseline {BASELINE_MSE:.3f} / 10)", flush=True)
    results = run(args.lengths, args.hidden, args.iterations, args.batch_size, args.lr, args.clip, args.seed)
    longest = max(args.lengths)
    print(f"||dE/dx_0|| / ||dE/dx_T-1|| at T = {longest} (how much of the gradient reaches the first step):")
    for name in MODELS:
        r = results[name, longest]
        print(f"  {name:8s} initial {r['grad_before'][0] / r['grad_before'][-1]:.2e}, "
              f"trained {r['grad_after'][0] / r['grad_after'][-1]:.2e}")
    for name in MODELS:
        solved = [steps for steps in args.lengths if results[name, steps]["solved"]]
        print(f"{name} solves T = {', '.join(map(str, solved)) if solved else 'none of them'}")
    if not args.no_plot:
        plot(results, args.lengths, args.out)
        print(f"plot written to {args.out}")
    return results


if __name__ == "__main__":
    main()
