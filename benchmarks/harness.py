"""What a benchmark case is, and how cases are timed.

A bench_<family>.py module defines `cases(quick)` returning a list of Case. run.py
sets the thread count of every library to `case.threads`, then times the callables
of one case interleaved (pycore, numpy, torch, pycore, numpy, torch, ...) after a
warm-up, and reports medians: interleaving spreads the noise of a shared machine
over all peers alike, so their ratio is steadier than their absolute times.
"""
import dataclasses
import statistics
import time
from typing import Callable, Optional


@dataclasses.dataclass
class Case:
    op: str                                   # "matmul", "conv2d fwd+bwd", ...
    shape: str                                # human-readable shape
    threads: int                              # run.py applies it to every peer
    pycore: Callable[[], object]
    numpy: Optional[Callable[[], object]] = None
    torch: Optional[Callable[[], object]] = None
    flops: Optional[float] = None             # per call, for GFLOP/s
    items: Optional[float] = None             # per call, for a rate (tokens, samples)
    items_name: str = ""                      # e.g. "tokens/s"
    memory: Optional[str] = None              # peak memory note, if measured


def time_interleaved(fns, repeats=7, warmup=2, min_time=0.05):
    """Median seconds per call of each callable in `fns` (a dict name -> fn).

    Each repetition runs every callable once in turn, looping a callable enough times
    that one repetition lasts about `min_time` (so tiny ops are not all timer noise).
    """
    loops = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        loops[name] = max(1, int(min_time / once))
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = loops[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {name: statistics.median(s) for name, s in samples.items()}
