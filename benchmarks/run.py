"""Time pycore against numpy and PyTorch, op by op, and print a markdown table.

    python benchmarks/run.py [--quick] [--only gemm,conv] [--threads 1,2] [--repeats N]
                             [--isa native|avx512|avx2|generic] [--separate [--pairs N]]
                             [--markdown FILE] [--json FILE]

Every benchmarks/bench_<family>.py defines `cases(quick)` returning harness.Case
objects (see harness.py). For each case this runner sets the thread count of every
library to case.threads, times pycore, numpy and torch interleaved (medians after a
warm-up) and reports the ratios peer_ms / pycore_ms: above 1 means pycore is faster.

--separate times each library alone in a fresh process instead (pycore, numpy, torch,
pycore, ... for --pairs rounds; the median of each library's medians): for 2-thread and
end-to-end comparisons, where the idle thread pools of the other libraries in one process
(spinning after their last call) take cores from the one being timed. Interleaved in one
process (the default) is the right measure for 1-thread kernel ratios on a busy machine.

--isa runs pycore, PyTorch and numpy's OpenBLAS on one instruction set (benchmarks/isa.py
says how; default native: each library's own best). Run one process per ISA:

    for isa in avx512 avx2; do python benchmarks/run.py --isa $isa --markdown bench-$isa.md; done
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # `import harness`, `import isa` from this folder

# Every library reads its instruction-set setting when it loads: set them before
# anything imports numpy, torch or pycore (and, for native runs, unset this machine's
# OpenBLAS overrides in this process only, so that numpy is measured at its best).
import isa  # noqa: E402

ISA = isa.isa_from_argv(sys.argv[1:])
isa.restrict(ISA)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import glob  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import traceback  # noqa: E402

# Use the source tree's pycore when it was built in place (setup.py build_ext --inplace);
# otherwise the installed one (pip install .), whose source tree has no compiled module.
if glob.glob(os.path.join(os.path.dirname(HERE), "pycore", "_C*")):
    sys.path.insert(1, os.path.dirname(HERE))

import numpy as np  # noqa: E402

import harness  # noqa: E402
import pycore  # noqa: E402

try:
    import torch
except ImportError:  # the torch column is left out, with a note
    torch = None
try:
    import threadpoolctl
except ImportError:  # numpy then runs with OpenBLAS's own thread count, with a note
    threadpoolctl = None

PEERS = ("numpy", "torch")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few, small cases (a smoke run)")
    p.add_argument("--only", default="", help="comma-separated families, e.g. gemm,conv")
    p.add_argument("--threads", default="", help="comma-separated thread counts to keep, e.g. 1,2")
    p.add_argument("--repeats", type=int, default=7, help="timed repetitions per case (median)")
    p.add_argument("--markdown", metavar="FILE", help="also write the header and table here")
    p.add_argument("--json", metavar="FILE", help="also write every measurement here")
    p.add_argument("--separate", action="store_true",
                   help="time each library alone in its own fresh process, alternating (see above)")
    p.add_argument("--pairs", type=int, default=3, help="--separate: rounds of one process per library (median)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # FAMILY:INDEX:LIBRARY, a --separate worker
    p.add_argument("--isa", choices=isa.CHOICES, default="native",
                   help="run pycore, torch and numpy's BLAS on this instruction set (see benchmarks/isa.py)")
    args = p.parse_args(argv)
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads: expected comma-separated integers, got {args.threads!r}")
    if args.repeats < 1:
        p.error(f"--repeats: expected at least 1, got {args.repeats}")
    if args.pairs < 1:
        p.error(f"--pairs: expected at least 1, got {args.pairs}")
    return args


# ----------------------------------------------------------------------------- header

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The SIMD extensions the CPU reports that matter to the kernels."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if x in have]
    except OSError:
        pass
    return []


def blas_info():
    """One line per BLAS / OpenMP runtime loaded in this process (threadpoolctl)."""
    if threadpoolctl is None:
        return ["threadpoolctl not installed: numpy's OpenBLAS kernel and threads are not reported "
                "or limited (numpy runs with its default thread count)"]
    lines = []
    for info in threadpoolctl.threadpool_info():
        if info.get("user_api") != "blas":
            continue
        lines.append(f"{info.get('internal_api')} {info.get('version')} kernel={info.get('architecture')} "
                     f"threads={info.get('num_threads')} ({os.path.basename(info.get('filepath', ''))})")
    return lines or ["no BLAS library reported by threadpoolctl"]


def header():
    config = io.StringIO()
    pycore.show_config(file=config)
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, flags: {' '.join(cpu_flags()) or 'none of note'}",
        f"numpy {np.__version__}; torch {torch.__version__ if torch is not None else 'not installed (column skipped)'}",
        *(f"numpy BLAS: {line}" for line in blas_info()),
    ]
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        lines.append(f"load average before the run: {load} (timings on a busy machine are noisy; "
                     "the ratios, measured interleaved, less so)")
    except OSError:
        pass
    lines.extend(isa.report(ISA))
    return lines, config.getvalue().rstrip()


# ----------------------------------------------------------------------------- cases

def discover(only):
    """(family, module or None, error or None) for every benchmarks/bench_*.py."""
    found = []
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        family = os.path.basename(path)[len("bench_"):-len(".py")]
        if only and family not in only:
            continue
        try:
            module = importlib.import_module(f"bench_{family}")
        except Exception:  # a broken bench file must not stop the others
            found.append((family, None, traceback.format_exc(limit=-3)))
            continue
        if callable(getattr(module, "cases", None)):  # a standalone script (bench_distributed) has none
            found.append((family, module, None))
    missing = sorted(set(only) - {family for family, _, _ in found})
    for family in missing:
        found.append((family, None, f"there is no benchmarks/bench_{family}.py"))
    return found


@contextlib.contextmanager
def thread_limits(n):
    """Run pycore, PyTorch and numpy's BLAS on n threads inside the block."""
    pycore_before = pycore.get_num_threads()
    torch_before = torch.get_num_threads() if torch is not None else None
    pycore.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    limits = threadpoolctl.threadpool_limits(limits=n, user_api="blas") if threadpoolctl else contextlib.nullcontext()
    try:
        with limits:
            yield
    finally:
        pycore.set_num_threads(pycore_before)
        if torch is not None:
            torch.set_num_threads(torch_before)


def libraries(case):
    """name -> callable for the libraries a case times (torch only when installed)."""
    fns = {"pycore": case.pycore}
    if case.numpy is not None:
        fns["numpy"] = case.numpy
    if case.torch is not None and torch is not None:
        fns["torch"] = case.torch
    return fns


def measure(case, repeats):
    with thread_limits(case.threads):
        return harness.time_interleaved(libraries(case), repeats=repeats)


def measure_separately(family, index, case, args):
    """Median seconds per library, each timed by a fresh `run.py --child` process; the
    libraries take turns (pycore, numpy, torch, pycore, ...) for args.pairs rounds."""
    samples = {name: [] for name in libraries(case)}
    for _ in range(args.pairs):
        for name in samples:
            command = [sys.executable, os.path.abspath(__file__), "--isa", args.isa, "--repeats", str(args.repeats),
                       "--child", f"{family}:{index}:{name}"] + (["--quick"] if args.quick else [])
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{name} process failed: {done.stderr.strip().splitlines()[-1:]}")
            samples[name].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return {name: statistics.median(values) for name, values in samples.items()}


def run_child(spec, args):
    """--child FAMILY:INDEX:LIBRARY: time one library on one case, print {"seconds": s}."""
    family, index, name = spec.split(":")
    case = list(importlib.import_module(f"bench_{family}").cases(args.quick))[int(index)]
    with thread_limits(case.threads):
        seconds = harness.time_interleaved({name: libraries(case)[name]}, repeats=args.repeats)[name]
    print(json.dumps({"seconds": seconds}))
    return 0


def make_row(case, seconds):
    """The table row of a case from the median seconds per library."""
    row = {"op": case.op, "shape": case.shape, "threads": case.threads}
    for name in ("pycore",) + PEERS:
        row[f"{name}_ms"] = seconds[name] * 1e3 if name in seconds else None
    for peer in PEERS:
        peer_ms = row[f"{peer}_ms"]
        row[f"{peer}/pycore"] = peer_ms / row["pycore_ms"] if peer_ms is not None else None
    row["pycore_gflops"] = case.flops / seconds["pycore"] / 1e9 if case.flops else None
    row["rate"] = case.items / seconds["pycore"] if case.items else None
    row["rate_unit"] = case.items_name if case.items else ""
    row["memory"] = case.memory
    return row


# ----------------------------------------------------------------------------- output

COLUMNS = ["op", "shape", "threads", "pycore ms", "numpy ms", "torch ms", "numpy/pycore", "torch/pycore",
           "pycore GFLOP/s", "rate"]


def column_titles():
    """COLUMNS with the instruction set each library's column ran on, e.g. 'torch ms (AVX2)'."""
    runs_on = {"pycore ms": pycore.simd_path(), "torch ms": isa.torch_capability(),
               "numpy ms": isa.openblas_kernel()}
    return [f"{c} ({runs_on[c]})" if runs_on.get(c) else c for c in COLUMNS]


def fmt(x, digits=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"
    return str(x)


def table_row(row):
    if "error" in row:
        return f"| {row['op']} | {row['shape']} | {row['threads']} | error: {row['error']} |" + " |" * 6
    rate = f"{row['rate']:.3g} {row['rate_unit']}" if row["rate"] is not None else "-"
    if row.get("memory"):
        rate += f"; {row['memory']}"
    cells = [row["op"], row["shape"], row["threads"], fmt(row["pycore_ms"]), fmt(row["numpy_ms"]),
             fmt(row["torch_ms"]), fmt(row["numpy/pycore"], 2), fmt(row["torch/pycore"], 2),
             fmt(row["pycore_gflops"]), rate]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def geomean_lines(rows):
    """Geometric mean of each peer/pycore ratio per (op, threads)."""
    groups = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault((row["op"], row["threads"]), []).append(row)
    lines = ["| op | threads | cases | geomean numpy/pycore | geomean torch/pycore |", "|---|---|---|---|---|"]
    for (op, threads), group in groups.items():
        means = []
        for peer in PEERS:
            ratios = [r[f"{peer}/pycore"] for r in group if r[f"{peer}/pycore"]]
            means.append(math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None)
        lines.append(f"| {op} | {threads} | {len(group)} | {fmt(means[0], 2)} | {fmt(means[1], 2)} |")
    return lines


def main(argv=None):
    args = parse_args(argv)
    isa.check(args.isa)
    if args.child:
        return run_child(args.child, args)
    head, config = header()
    out = []

    def say(line=""):
        print(line, flush=True)
        out.append(line)

    for line in head:
        say(line)
    say("")
    say("```")
    for line in config.splitlines():
        say(line)
    say("```")
    if torch is None:
        say("note: torch is not installed; the torch columns are empty.")
    if threadpoolctl is None:
        say("note: threadpoolctl is not installed; numpy's BLAS thread count is not set per case.")
    say("")
    if args.separate:
        say("Ratios are peer ms / pycore ms: above 1 means pycore is faster. Each library timed alone in "
            f"its own process ({args.repeats} repetitions after warm-up, median), the libraries taking "
            f"turns for {args.pairs} rounds; the median over the rounds.")
    else:
        say("Ratios are peer ms / pycore ms: above 1 means pycore is faster. Medians of "
            f"{args.repeats} interleaved repetitions after warm-up.")
    say("")
    say("| " + " | ".join(column_titles()) + " |")
    say("|" + "---|" * len(COLUMNS))

    rows, problems = [], []
    for family, module, error in discover(args.only):
        if module is None:
            problems.append(f"bench_{family}: not run:\n{error}")
            print(f"bench_{family}: not run:\n{error}", file=sys.stderr, flush=True)
            continue
        try:
            cases = list(module.cases(args.quick))
        except Exception:
            error = traceback.format_exc(limit=-3)
            problems.append(f"bench_{family}.cases() failed:\n{error}")
            print(f"bench_{family}.cases() failed, skipped:\n{error}", file=sys.stderr, flush=True)
            continue
        for index, case in enumerate(cases):
            if args.threads and case.threads not in args.threads:
                continue
            try:
                seconds = (measure_separately(family, index, case, args) if args.separate
                           else measure(case, args.repeats))
                row = make_row(case, seconds)
            except Exception as exc:  # one failing case is reported, the rest still run
                row = {"op": case.op, "shape": case.shape, "threads": case.threads,
                       "error": f"{type(exc).__name__}: {exc}".replace("|", "/").replace("\n", " ")}
            row["family"] = family
            rows.append(row)
            say(table_row(row))

    try:
        say("")
        say("load average after the run: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    except OSError:
        pass
    say("")
    for line in geomean_lines(rows):
        say(line)
    if problems:
        say("")
        say("Skipped:")
        for problem in problems:
            say("    " + problem.replace("\n", "\n    ").rstrip())

    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(out) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": head, "config": config, "isa": args.isa, "separate": args.separate,
                   "repeats": args.repeats, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
