"""A small ResNet written with forward only: pycore records each forward and replays it backward.

    python -m pycore.examples.resnet                      # scikit-learn's digits, offline, in about a minute
    python -m pycore.examples.resnet --data ../shared/data/mnist --epochs 5
    python -m pycore.examples.resnet --data ../shared/data/mnist --torch   # and the same model in PyTorch

The model is He et al.'s CIFAR-style ResNet (2016), one BasicBlock per stage, for 1-channel
digits; none of its classes defines backward (pycore/autograd.py derives it):

    (N, 1, H, W) -> conv3x3 16, BN, ReLU, maxpool 2     (H/2, W/2): 14x14 for MNIST
                 -> BasicBlock 16 -> 16                 (H/2, W/2)
                 -> BasicBlock 16 -> 32, stride 2       (H/4, W/4): shortcut conv1x1 stride 2 + BN
                 -> BasicBlock 32 -> 64, stride 2       (H/8, W/8)
                 -> AdaptiveAvgPool2d(1) -> flatten -> Linear 64 -> 10 (logits)

The max pooling after the stem (ImageNet ResNet's, at 2x2 here) runs the blocks on 14x14
maps: 2.6x fewer multiply-adds than at 28x28, so that an MNIST epoch takes a minute or
two on two cores.

    BasicBlock: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), one ReLU module
    used twice, the sum through F.add.

Training: SGD with Nesterov momentum and weight decay, the one-cycle learning rate schedule
(per step), random shifts of up to 2 pixels on MNIST. With --torch the same network is
built in PyTorch with the same initial weights (copied through state_dict) and trained on
the same batches, and both times per epoch are printed.
"""
import argparse
import time

import numpy as np

import pycore
from pycore import functional as F
from pycore import nn, optim
from pycore.data import DataLoader
from pycore.datasets import load_digits, mnist_available
from pycore.examples import add_run_options, start_run
from pycore.train import fit

from .lenet import mnist_dataset

WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a skip connection (torchvision's BasicBlock)."""

    def __init__(self, in_channels, channels, stride=1, dtype=np.float32):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(channels, dtype=dtype)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(channels, dtype=dtype)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != channels:  # match the main path's shape: 1x1 conv, strided
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False, dtype=dtype),
                                          nn.BatchNorm2d(channels, dtype=dtype))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(F.add(out, self.shortcut(x)))


class ResNet(nn.Module):
    """Stem (conv, BN, ReLU, 2x2 max pooling), one BasicBlock per width (each after the first
    halves the image), global average pooling and a linear classifier."""

    def __init__(self, widths=WIDTHS, in_channels=1, num_classes=10, dtype=np.float32):
        super().__init__()
        self.widths = tuple(widths)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(widths[0], dtype=dtype)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        blocks, channels = [], widths[0]
        for i, width in enumerate(widths):
            blocks.append(BasicBlock(channels, width, stride=1 if i == 0 else 2, dtype=dtype))
            channels = width
        self.layers = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes, dtype=dtype)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(F.flatten(x, 1))


def torch_resnet(widths=WIDTHS, in_channels=1, num_classes=10):
    """The same network in PyTorch, with the same state_dict keys."""
    import torch.nn as tnn

    class TorchBlock(tnn.Module):
        def __init__(self, in_channels, channels, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(channels)
            self.relu = tnn.ReLU()
            self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(channels)
            self.shortcut: tnn.Module = tnn.Identity()
            if stride != 1 or in_channels != channels:
                self.shortcut = tnn.Sequential(tnn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                               tnn.BatchNorm2d(channels))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class TorchResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(widths[0])
            self.relu = tnn.ReLU()
            self.pool = tnn.MaxPool2d(2)
            channels, blocks = widths[0], []
            for i, width in enumerate(widths):
                blocks.append(TorchBlock(channels, width, stride=1 if i == 0 else 2))
                channels = width
            self.layers = tnn.Sequential(*blocks)
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(channels, num_classes)

        def forward(self, x):
            x = self.pool(self.relu(self.bn1(self.conv1(x))))
            return self.fc(self.avgpool(self.layers(x)).flatten(1))

    return TorchResNet()


def copy_weights_to_torch(model, torch_model):
    """torch_model takes model's parameters and buffers (the same keys)."""
    import torch

    torch_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})


def random_shift(limit):
    """A DataLoader transform: each image moved by up to `limit` pixels on each axis (zero fill)."""

    def shift(images, rng):
        n, _, h, w = images.shape
        padded = np.pad(images, ((0, 0), (0, 0), (limit, limit), (limit, limit)))
        dy, dx = rng.integers(0, 2 * limit + 1, size=(2, n))
        out = np.empty_like(images)
        for i in range(n):
            out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        return out

    return shift


def digits_dataset(seed=0, test_fraction=0.2):
    """scikit-learn's 8x8 digits, standardised, split with a seeded shuffle: ((x, y), (x, y))."""
    images, labels = load_digits()
    order = np.random.default_rng(seed).permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    mean, std = images[order[:cut]].mean(), images[order[:cut]].std()
    x = ((images - mean) / std).astype(np.float32)[:, None]
    return (x[order[:cut]], labels[order[:cut]]), (x[order[cut:]], labels[order[cut:]])


def train_torch(model, epochs, loader, test_loader, lr, momentum, weight_decay, threads):
    """The PyTorch copy trained on the same batches with the same recipe; (seconds per epoch, test accuracy)."""
    import torch

    torch.set_num_threads(threads)
    torch_model = torch_resnet(model.widths)
    copy_weights_to_torch(model, torch_model)
    opt = torch.optim.SGD(torch_model.parameters(), lr=lr, momentum=momentum, nesterov=True,
                          weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=epochs, steps_per_epoch=len(loader))
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        torch_model.train()
        start = time.perf_counter()
        for x, y in loader:
            opt.zero_grad()
            loss_fn(torch_model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
            opt.step()
            schedule.step()
        times.append(time.perf_counter() - start)
    torch_model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in test_loader:
            correct += int((torch_model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
    return times, correct / len(test_loader.arrays[0])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m pycore.examples.resnet", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", metavar="DIR", help="folder with the MNIST IDX files: train on full MNIST")
    p.add_argument("--digits", action="store_true", help="use scikit-learn's digits even if MNIST is available")
    p.add_argument("--epochs", type=int, help="passes over the training data (default: 5 on MNIST, 15 on digits)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--widths", type=int, nargs=3, default=WIDTHS, metavar="C", help="channels of the three stages")
    p.add_argument("--limit", type=int, help="use only this many training and test images (a quick run)")
    add_run_options(p)
    p.add_argument("--torch", action="store_true", help="also train the same model in PyTorch and compare times")
    p.add_argument("--verbose", action="store_true", help="report every epoch even when not on a terminal")
    return p.parse_args(argv)


def main(argv=None):
    """Train and return the test accuracy (and the PyTorch copy's with --torch, as a pair)."""
    args = parse_args(argv)
    start_run(args)
    if args.data is not None or (not args.digits and mnist_available()):
        (x_train, y_train), (x_test, y_test), _ = mnist_dataset(args.data)
        dataset, epochs, transform = "MNIST", args.epochs or 5, random_shift(2)
    else:
        (x_train, y_train), (x_test, y_test) = digits_dataset(args.seed)
        dataset, epochs, transform = "digits", args.epochs or 15, None
    if args.limit:
        x_train, y_train, x_test, y_test = x_train[:args.limit], y_train[:args.limit], x_test[:args.limit], \
            y_test[:args.limit]
    widths = tuple(args.widths)
    model = ResNet(widths)
    print(f"ResNet {'-'.join(map(str, widths))} ({model.num_parameters():,} parameters, backward from the tape) "
          f"on {dataset}: {len(x_train)} training and {len(x_test)} test images, {epochs} epochs, batch "
          f"{args.batch_size}, SGD lr {args.lr} one-cycle, {pycore.get_num_threads()} threads", flush=True)
    initial = {k: np.array(v) for k, v in model.state_dict().items()}  # for the PyTorch copy

    def loaders():  # a fresh pair with the same seed gives both libraries the same batches
        return (DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                           transform=transform),
                DataLoader(x_test, y_test, batch_size=500))

    train_loader, test_loader = loaders()
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, nesterov=True,
                          weight_decay=args.weight_decay)
    scheduler = optim.OneCycleLR(optimizer, max_lr=args.lr, epochs=epochs, steps_per_epoch=len(train_loader))
    history = fit(model, nn.CrossEntropyLoss(), optimizer, train_loader, epochs, val_loader=test_loader,
                  scheduler=scheduler, scheduler_interval="step", verbose=True if args.verbose else None)
    accuracy = history["val_accuracy"][-1]
    print(f"pycore: test accuracy {100 * accuracy:.2f}%, seconds per epoch "
          f"{', '.join(f'{t:.1f}' for t in history['time'])}", flush=True)
    if not args.torch:
        return accuracy
    start_model = ResNet(widths)
    start_model.load_state_dict(initial)
    train_loader, test_loader = loaders()
    times, torch_accuracy = train_torch(start_model, epochs, train_loader, test_loader, args.lr, args.momentum,
                                        args.weight_decay, pycore.get_num_threads())
    print(f"PyTorch: test accuracy {100 * torch_accuracy:.2f}%, seconds per epoch "
          f"{', '.join(f'{t:.1f}' for t in times)}; PyTorch time / pycore time per epoch: "
          f"{np.mean(times) / np.mean(history['time']):.2f}", flush=True)
    return accuracy, torch_accuracy


if __name__ == "__main__":
    main()
