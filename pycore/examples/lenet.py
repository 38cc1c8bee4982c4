"""LeNet-5 on handwritten digits: pycore's main job.

    pip install -e ".[examples]" && python -m pycore.examples.lenet

With no arguments it trains on scikit-learn's 8x8 digits (1797 real scans that come with
the `examples` extra; upsampled 3x and padded to the network's 28x28 input), offline, in
well under a minute, and prints the test accuracy. With --data DIR, or when the MNIST files
are in $PYCORE_DATA/mnist or the cache (~/.cache/pycore/mnist), it trains on full MNIST.

    python -m pycore.examples.lenet --data ~/mnist --epochs 2 --save lenet.safetensors
    python -m pycore.examples.embed --model lenet.safetensors

Data-parallel over MPI (pip install ".[distributed]"): fit(distributed=True), each rank
training on its shard with --batch-size / ranks images per step, gradients averaged, so
the run follows the single-process recipe; rank 0 prints and saves.

    mpiexec -n 2 python -m pycore.examples.lenet --distributed

The network (LeCun et al. 1998, with ReLU and max pooling as is usual today):

    (N, 1, 28, 28) -> conv5x5 6 (pad 2) -> relu -> maxpool 2 -> (N, 6, 14, 14)
                   -> conv5x5 16       -> relu -> maxpool 2 -> (N, 16, 5, 5)
                   -> flatten 400 -> fc 120 -> relu -> fc 84 -> relu -> fc 10 (logits)
"""
import argparse
import os

import numpy as np

import pycore
import pycore.distributed as dist
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.datasets import load_digits, load_mnist, mnist_available
from pycore.examples import add_run_options
from pycore.train import fit

IMAGE_SIZE = 28
ARCH = "lenet5"


def build_lenet(dtype=np.float32):
    """LeNet-5 for (N, 1, 28, 28) inputs and 10 classes; PyTorch's layer names (0.weight, ...)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120, dtype=dtype), nn.ReLU(),
        nn.Linear(120, 84, dtype=dtype), nn.ReLU(),
        nn.Linear(84, 10, dtype=dtype),
    )


def to_network_input(images, mean, std):
    """Images -> the network's float32 (N, 1, 28, 28) input, standardised with (mean, std).

    images: (N, 28, 28) or (N, 1, 28, 28) MNIST-style, or (N, 8, 8) scikit-learn digits
    (each pixel becomes a 3x3 block, then 2 pixels of padding make 28x28). uint8 values are
    read as 0..255; float values as 0..1.
    """
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32, copy=False)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"images: expected (N, 28, 28), (N, 1, 28, 28) or (N, 8, 8), got shape {x.shape}")
    if x.shape[1:] == (8, 8):
        x = np.kron(x, np.ones((1, 3, 3), dtype=np.float32))
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    if x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images: expected 28x28 or 8x8 images, got shape {x.shape}")
    return np.ascontiguousarray(((x - mean) / std)[:, None, :, :], dtype=np.float32)


def digits_dataset(seed=0, test_fraction=0.2):
    """scikit-learn's digits split into train/test with a seeded shuffle: ((x, y), (x, y), info)."""
    images, labels = load_digits()
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    mean, std = float(images[train].mean()), float(images[train].std())
    info = {"dataset": "digits", "mean": mean, "std": std}
    return ((to_network_input(images[train], mean, std), labels[train]),
            (to_network_input(images[test], mean, std), labels[test]), info)


def mnist_dataset(folder=None):
    """Full MNIST (60000 train / 10000 test), standardised with the usual 0.1307 / 0.3081."""
    (x_train, y_train), (x_test, y_test) = load_mnist(folder)
    mean, std = 0.1307, 0.3081
    info = {"dataset": "mnist", "mean": mean, "std": std}
    return (to_network_input(x_train, mean, std), y_train), (to_network_input(x_test, mean, std), y_test), info


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.lenet", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="DIR", help="folder with the MNIST IDX files (gz or raw): train on full MNIST")
    p.add_argument("--digits", action="store_true", help="use scikit-learn's digits even if MNIST is available")
    p.add_argument("--epochs", type=int, help="passes over the training data (default: 2 on MNIST, 15 on digits)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (momentum 0.9)")
    p.add_argument("--momentum", type=float, default=0.9)
    add_run_options(p)
    p.add_argument("--save", metavar="PATH", help="save the trained model here (.safetensors)")
    p.add_argument("--plot", metavar="PNG", help="save the learning curves (needs matplotlib)")
    p.add_argument("--quick", action="store_true", help="a smoke test: 256 training images, 1 epoch")
    p.add_argument("--verbose", action="store_true", help="report every epoch even when not on a terminal")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the ranks of `mpiexec -n N` (threads default to each rank's share)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ranks = 1
    if args.distributed:
        ranks = dist.init(threads=args.threads)
        if args.batch_size % ranks:
            raise ValueError(f"--batch-size {args.batch_size} must be a multiple of the {ranks} ranks")
    elif args.threads:
        pycore.set_num_threads(args.threads)
    say = dist.print_main if args.distributed else print  # under mpiexec: rank 0 speaks
    pycore.manual_seed(args.seed)
    if args.data is not None or (not args.digits and mnist_available()):
        (x_train, y_train), (x_test, y_test), info = mnist_dataset(args.data)
        epochs = args.epochs or 2
    else:
        (x_train, y_train), (x_test, y_test), info = digits_dataset(args.seed)
        epochs = args.epochs or 15
    if args.quick:
        x_train, y_train, x_test, y_test, epochs = x_train[:256], y_train[:256], x_test[:256], y_test[:256], 1
    batch = f"{args.batch_size} = {ranks} ranks x {args.batch_size // ranks}" if args.distributed else args.batch_size
    threads = f"{pycore.get_num_threads()} threads" + (" per rank" if args.distributed else "")
    say(f"LeNet-5 on {info['dataset']}: {len(x_train)} training and {len(x_test)} test images, "
        f"{epochs} epochs, batch {batch}, SGD lr {args.lr} momentum {args.momentum}, {threads}", flush=True)

    model = build_lenet()
    if args.distributed:  # fit would wrap it too; wrapped here to report its communication time
        model = dist.DistributedDataParallel(model)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    loss_fn = nn.CrossEntropyLoss()
    if args.distributed:  # each rank its shard of every global batch, and of the test set
        train_loader = DataLoader(x_train, y_train, batch_size=args.batch_size // ranks,
                                  sampler=dist.DistributedSampler(len(x_train), seed=args.seed))
        test_loader = DataLoader(x_test, y_test, batch_size=500,
                                 sampler=dist.DistributedSampler(len(x_test), shuffle=False))
    else:
        train_loader = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
        test_loader = DataLoader(x_test, y_test, batch_size=500)
    history = fit(model, loss_fn, optimizer, train_loader, epochs, val_loader=test_loader,
                  verbose=True if args.verbose else None, plot=args.plot, distributed=args.distributed)
    # the last epoch's validation pass is the test result (the model has not changed since)
    test_loss, test_accuracy = history["val_loss"][-1], history["val_accuracy"][-1]
    trained = sum(history["time"])
    where = (f"{ranks} ranks, all-reduce {100 * model.communication_seconds / trained:.0f}% of the training time"
             if args.distributed else f"trained in {trained:.1f} s")
    say(f"test accuracy {100 * test_accuracy:.2f}%  (test loss {test_loss:.4f}; {where}, "
        f"{np.mean(history['samples_per_s']):,.0f} samples/s)")
    if args.save and (not args.distributed or dist.is_main()):
        steps = len(train_loader) * history.epochs
        pycore.save(args.save, model, optimizer, arch=ARCH, epoch=history.epochs, step=steps,
                    dataset=info["dataset"], mean=info["mean"], std=info["std"], test_accuracy=test_accuracy,
                    hparams={"lr": args.lr, "momentum": args.momentum, "batch_size": args.batch_size,
                             "seed": args.seed, "ranks": ranks}, rng_state=pycore.get_rng_state(),
                    loader_state=train_loader.state_dict())
        print(f"saved to {os.path.abspath(args.save)}  (serve it: python -m pycore.examples.embed --model {args.save})",
              flush=True)
    return test_accuracy


if __name__ == "__main__":
    main()
