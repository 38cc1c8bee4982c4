"""Runnable examples (`python -m pycore.examples.NAME`) and the two options they share."""
import argparse

import pycore


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--seed and --threads, which every example takes."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="OpenMP threads (default: all cores)")


def start_run(args: argparse.Namespace) -> None:
    """Apply --threads and --seed (pycore's initialisation and dropout RNG) before a run."""
    if args.threads:
        pycore.set_num_threads(args.threads)
    pycore.manual_seed(args.seed)
