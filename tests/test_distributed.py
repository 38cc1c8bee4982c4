"""pycore.distributed under real MPI: `mpiexec -n N` processes launched from the test.

The programs live in mpi_scenarios.py; each rank writes its results to a folder and the
tests compare them with each other (bit for bit) and with one process (world of one)
that runs the same training in this test process, with the whole batch.
"""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pycore
import pycore.distributed as dist
from conftest import child_process_env
from pycore.data import DataLoader

HERE = os.path.dirname(os.path.abspath(__file__))


def _mpiexec_path():
    """The mpiexec next to this interpreter (the mpich wheel's, in a virtual environment), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")


def _mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install \".[distributed]\")"
    if _mpiexec_path() is None:
        return "no mpiexec beside the interpreter or on PATH (pip install \".[distributed]\" brings MPICH's)"
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def mpiexec(ranks, scenario, out, timeout=90):
    """Run mpi_scenarios.py `scenario` on `ranks` processes; returns (CompletedProcess, seconds)."""
    env = child_process_env()
    env["PYTHONPATH"] = HERE + os.pathsep + env["PYTHONPATH"]
    # MPICH's hydra refuses nothing as root, but Open MPI's mpiexec does without these.
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    env.pop("PYCORE_DISTRIBUTED", None)
    started = time.perf_counter()
    result = subprocess.run([_mpiexec_path(), "-n", str(ranks), sys.executable, os.path.join(HERE, "mpi_scenarios.py"),
                             scenario, str(out)], capture_output=True, text=True, env=env, timeout=timeout)
    return result, time.perf_counter() - started


def load_ranks(out, name, ranks):
    return [dict(np.load(out / f"{name}.rank{r}.npz")) for r in range(ranks)]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """The folder where a 2-rank job left its weights and checkpoints (mpi_scenarios.scenario_train)."""
    out = tmp_path_factory.mktemp("two_ranks")
    result, _ = mpiexec(2, "train", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def assert_ranks_agree_and_match(ranks, single, dtype, what):
    """Every rank's arrays equal bit for bit; rank 0's equal to the single process' within rounding."""
    assert set(ranks[0]) == set(single) and len(single) > 4
    for key in single:
        for other in ranks[1:]:
            np.testing.assert_array_equal(ranks[0][key], other[key], err_msg=f"{what} {key}: ranks differ")
        tolerance = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(ranks[0][key], single[key], rtol=tolerance, atol=tolerance,
                                   err_msg=f"{what} {key}: {len(ranks)} ranks vs 1 process")


@needs_mpi
def test_two_ranks_train_like_one_process_with_the_whole_batch(two_rank_run):
    """K steps of SGD-momentum and Adam, CNN (Sequential: overlapped buckets) and char-LSTM
    (one backward, then all buckets), float32 and float64: 2 ranks x batch B/2 give one
    process' weights and optimizer state with batch B, and the ranks agree bit for bit.
    Each rank builds its model from a different seed, so only the broadcast makes them agree."""
    import mpi_scenarios
    for name, kind, optimizer, dtype in mpi_scenarios.CASES:
        ranks = load_ranks(two_rank_run, name, 2)
        single = mpi_scenarios.train(kind, optimizer, dtype)  # this process: a world of one
        assert_ranks_agree_and_match(ranks, single, dtype, name)
        rank0 = ranks[0]

        # rank 0's checkpoint loads on a single rank: same weights and optimizer state
        model = mpi_scenarios.build(kind, dtype)
        optimizer_ = mpi_scenarios.make_optimizer(optimizer, model.parameters())
        metadata = pycore.load(two_rank_run / f"{name}.safetensors", model, optimizer_)
        assert metadata["step"] == mpi_scenarios.STEPS
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(value, rank0[f"w.{key}"])
        for index, entries in optimizer_.state_dict()["state"].items():
            for key, value in entries.items():
                np.testing.assert_array_equal(np.asarray(value), rank0[f"opt.{index}.{key}"])


@needs_mpi
def test_three_ranks_resume_reduce_to_the_same_bits_and_shard_uneven_data(two_rank_run):
    """The 2-rank checkpoints resumed on 3 ranks (rank 0 reads, then broadcasts weights and
    optimizer state) train like one process resumed from them. All-reduce of 7 / 5000 /
    300001 values (MPICH changes algorithm with the size) is the float64-accurate mean and
    bit-identical on 3 ranks; allreduce_mean; DistributedSampler on 10 samples over 3 ranks:
    padded to 4 each or cut to 3 each, equal batch counts; each rank's default thread share;
    a model that differs on one rank raises ValueError on every rank."""
    import mpi_scenarios
    tmp_path = two_rank_run
    result, _ = mpiexec(3, "collectives", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, kind, optimizer, dtype in mpi_scenarios.RESUMED:
        single = mpi_scenarios.train(kind, optimizer, dtype, resume=tmp_path / f"{name}.safetensors",
                                     global_batch=6, epoch=1)
        assert_ranks_agree_and_match(load_ranks(tmp_path, f"resumed_{name}", 3), single, dtype, f"resumed {name}")
    ranks = load_ranks(tmp_path, "collectives", 3)
    for key in (k for k in ranks[0] if not k.startswith("shard")):  # shards differ by design
        for other in ranks[1:]:
            np.testing.assert_array_equal(ranks[0][key], other[key], err_msg=f"{key}: ranks differ")
    generators = [np.random.default_rng(r) for r in range(3)]
    for size in (7, 5000, 300_001):
        for dtype in (np.float32, np.float64):
            draws = [g.standard_normal(size).astype(dtype) for g in generators]
            expected = np.mean(np.stack(draws).astype(np.float64), axis=0)
            tolerance = 1e-6 if dtype == np.float32 else 1e-14
            np.testing.assert_allclose(ranks[0][f"grad_{size}_{np.dtype(dtype).name}"], expected,
                                       rtol=tolerance, atol=tolerance)
    assert all(r["mismatch_raised"] for r in ranks)
    share, cpus = ranks[0]["cpu_share"]  # mpiexec binds no rank: all 3 share the same CPUs
    assert share == max(1, cpus // 3)
    assert ranks[0]["mean_scalar"] == pytest.approx((0 + 1 + 2) / 9)
    np.testing.assert_allclose(ranks[0]["mean_array"], np.arange(3) * 1.0)

    order = np.random.default_rng(5 + 2).permutation(10)  # seed + epoch, as every rank draws it
    padded = [np.concatenate([order, order[:2]])[r::3] for r in range(3)]
    shards = [ranks[r]["shard_drop0"] for r in range(3)]
    for r in range(3):
        np.testing.assert_array_equal(shards[r], padded[r])
    assert set(np.concatenate(shards)) == set(range(10))
    cut = [ranks[r]["shard_drop1"] for r in range(3)]
    assert [len(c) for c in cut] == [3, 3, 3] and len(set(np.concatenate(cut))) == 9
    for r in range(3):
        np.testing.assert_array_equal(cut[r], order[:9][r::3])
        assert ranks[r]["batches_drop0"].tolist() == [2, 2] and ranks[r]["batches_drop1"].tolist() == [1, 1]


@needs_mpi
@pytest.mark.parametrize("when", ["after_init", "before_init"])
def test_an_exception_on_one_rank_ends_the_job(tmp_path, when):
    """Rank 1 raises while rank 0 waits in a barrier: non-zero exit and the traceback, not a hang."""
    result, seconds = mpiexec(2, f"raise_{when}", tmp_path, timeout=60)
    assert result.returncode != 0
    assert "deliberate failure on rank 1" in result.stderr
    assert "rank 1 raised" in result.stderr
    print(f"job ended {seconds:.1f} s after launch")


@needs_mpi
def test_lenet_example_runs_under_mpiexec(tmp_path):
    """`mpiexec -n 2 python -m pycore.examples.lenet --distributed` as docs/guides/parallelism.md shows (--quick)."""
    pytest.importorskip("sklearn")
    env = child_process_env()
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([_mpiexec_path(), "-n", "2", sys.executable, "-m", "pycore.examples.lenet", "--distributed",
                             "--quick", "--digits"], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("test accuracy") == 1  # printed by rank 0 only
    assert "2 ranks" in result.stdout


class _WholeBatches:
    """One process' batches for the fit tests: FIT_BATCH samples at a time in the order
    permutation(FIT_SEED + epoch) that every rank draws (PyTorch's DistributedSampler rule),
    written here without pycore.distributed."""

    def __init__(self, x, y):
        self.x, self.y, self.epoch = x, y, 0

    def __len__(self):
        import mpi_scenarios
        return len(self.x) // mpi_scenarios.FIT_BATCH

    def __iter__(self):
        import mpi_scenarios
        order = np.random.default_rng(mpi_scenarios.FIT_SEED + self.epoch).permutation(len(self.x))
        self.epoch += 1
        for start in range(0, len(order), mpi_scenarios.FIT_BATCH):
            batch = order[start: start + mpi_scenarios.FIT_BATCH]
            yield self.x[batch], self.y[batch]


def _fit_one_process(**fit_args):
    """The reference: plain fit (not distributed) of the same model with the whole batch."""
    import mpi_scenarios
    (x, y), (xv, yv) = mpi_scenarios.fit_data()
    model, optimizer, scheduler, early = mpi_scenarios.fit_objects()
    history = pycore.train.fit(model, pycore.nn.CrossEntropyLoss(), optimizer, _WholeBatches(x, y),
                               mpi_scenarios.FIT_EPOCHS,
                               val_loader=DataLoader(xv, yv, batch_size=len(xv)), callbacks=[early],
                               scheduler=scheduler, verbose=0, **fit_args)
    return mpi_scenarios.history_arrays(model, history)


def assert_fit_matches(ranks, single, what):
    """Ranks bit-identical (weights and history); weights within float32 rounding of one
    process; loss values within rounding, accuracies and rates exactly (counts over all ranks)."""
    for other in ranks[1:]:
        assert set(other) == set(ranks[0])
        for key in ranks[0]:
            np.testing.assert_array_equal(ranks[0][key], other[key], err_msg=f"{what} {key}: ranks differ")
    got = ranks[0]
    assert {k for k in single if k not in ("h.time", "h.samples_per_s")} <= set(got)
    for key in single:
        if key.startswith("w."):
            np.testing.assert_allclose(got[key], single[key], rtol=2e-5, atol=2e-5, err_msg=f"{what} {key}")
    for key in ("h.loss", "h.val_loss", "h.step_loss"):
        np.testing.assert_allclose(got[key], single[key], rtol=1e-5, err_msg=f"{what} {key}")
    for key in ("h.accuracy", "h.val_accuracy", "h.lr", "h.epoch"):
        np.testing.assert_array_equal(got[key], single[key], err_msg=f"{what} {key}")
    import mpi_scenarios
    np.testing.assert_allclose(got["h.samples_per_s"] * got["h.time"],
                               mpi_scenarios.FIT_SAMPLES, rtol=1e-9)  # all ranks' samples per second


@pytest.fixture(scope="module")
def fit_two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    result, _ = mpiexec(2, "fit", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


@needs_mpi
def test_fit_distributed_on_two_ranks_equals_one_process_with_the_whole_batch(fit_two_ranks):
    """fit(distributed=True), 2 ranks x batch 3, validation sharded (13 samples: rank 1's
    padding left out): the weights and every logged value of one process with batch 6 (also
    with accumulate=4, gradients weighted by the group's samples over all ranks),
    identical bits on both ranks; the plateau scheduler and early stopping decide alike;
    only rank 0 prints; rank 0's checkpoint after the last epoch holds the final weights."""
    out, stdout = fit_two_ranks
    single = _fit_one_process()
    ranks = load_ranks(out, "fit", 2)
    assert_fit_matches(ranks, single, "2 ranks")
    assert_fit_matches(load_ranks(out, "fit_accumulate", 2), _fit_one_process(accumulate=4), "accumulate=4")
    assert [stdout.count(f"epoch {e}/3") for e in (1, 2, 3)] == [1, 1, 1], stdout
    assert single["h.lr"].tolist() == [0.1, 0.1, 0.05]  # the plateau scheduler acted (on val_loss)
    state, metadata = pycore.load(out / "fit-3.safetensors")
    for key, value in state.items():
        np.testing.assert_array_equal(value, ranks[0][f"w.{key}"])
    assert metadata["epoch"] == 3 and metadata["history"]["epochs"]["loss"] == list(ranks[0]["h.loss"])


@needs_mpi
def test_fit_resumes_a_two_rank_checkpoint_on_one_and_three_ranks(fit_two_ranks):
    """The 2-rank epoch-1 checkpoint (rank 0 reads it and sends it to all) resumed on 3 ranks
    (validation whole on each rank: rank 0 evaluates it) and on 1 (this process, a world of
    one) ends where the uninterrupted run ends; epoch 1's history is the checkpoint's, bit for bit."""
    import mpi_scenarios
    out, _ = fit_two_ranks
    result, _ = mpiexec(3, "fit_resume", out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("epoch 2/3") == 1 and "epoch 1/3" not in result.stdout
    uninterrupted = load_ranks(out, "fit", 2)[0]
    three = load_ranks(out, "fit_resume3", 3)
    one = mpi_scenarios.fit_distributed(str(out / "resumed1-{epoch}.safetensors"),
                                        resume=str(out / "fit-1.safetensors"))
    for what, ranks in (("3 ranks", three), ("1 rank", [one])):
        assert_fit_matches(ranks, uninterrupted, f"resumed on {what}")
        for key in uninterrupted:
            if key.startswith("h.") and key != "h.step_loss":
                np.testing.assert_array_equal(ranks[0][key][0], uninterrupted[key][0], err_msg=key)
        first_epoch = len(uninterrupted["h.step_loss"]) // mpi_scenarios.FIT_EPOCHS
        np.testing.assert_array_equal(ranks[0]["h.step_loss"][:first_epoch],
                                      uninterrupted["h.step_loss"][:first_epoch])


@needs_mpi
def test_fit_distributed_misuse_raises_on_every_rank(tmp_path):
    """A loader without a DistributedSampler, a sampler for another world size on rank 1
    only, unequal batch counts, a DDP model without distributed=True: the same error on both
    ranks (the job ends normally, nobody hangs). A NaN sample on one rank's shard: both
    ranks raise NonFiniteLossError, or both skip that batch and stay identical. A missing
    checkpoint to resume (rank 0 reads) and a checkpoint folder that does not exist (rank 0
    writes): rank 0's error on both ranks."""
    result, _ = mpiexec(2, "fit_misuse", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    ranks = [{k: (str(v) if v.dtype.kind == "U" else v) for k, v in r.items()}
             for r in load_ranks(tmp_path, "misuse", 2)]
    expected = {"plain_loader": "ValueError: fit(distributed=True): train_loader.sampler must be a "
                                "pycore.distributed.DistributedSampler",
                "wrong_replicas": "ValueError: fit(distributed=True): train_loader.sampler has num_replicas=1, "
                                  "but the job has 2 ranks (on rank 1)",
                "unequal_lengths": "ValueError: fit(distributed=True): rank ",
                "wrapped_not_distributed": "ValueError: fit: model is a DistributedDataParallel in a job of 2 ranks",
                "nonfinite_raise": "NonFiniteLossError: fit: the loss is ",
                "nonfinite_skip": "ok skipped=[1]",
                "missing_checkpoint": "FileNotFoundError: load: no checkpoint at",
                "unwritable_checkpoint": "FileNotFoundError: "}
    for name, start in expected.items():
        for rank in ranks:
            assert rank[name].startswith(start), (name, rank[name])
    assert "len(train_loader): 6 vs 5" in ranks[0]["unequal_lengths"]
    assert any("nan at epoch 1" in r["nonfinite_raise"] for r in ranks)
    assert any("on 1 of 2 ranks" in r["nonfinite_raise"] for r in ranks)
    np.testing.assert_array_equal(ranks[0]["nonfinite_skip.weights"], ranks[1]["nonfinite_skip.weights"])
    assert np.isfinite(ranks[0]["nonfinite_skip.weights"]).all()


# -- without MPI: a world of one, and the pieces that need no second process ------------------
def test_world_of_one_without_a_launcher(monkeypatch):
    for name in dist.world._LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not dist.launched_under_mpi()
    assert dist.world_size() == 1 and dist.rank() == 0 and dist.is_main()
    assert dist.allreduce_mean(2.5) == 2.5
    np.testing.assert_array_equal(dist.allreduce_mean(np.array([1.0, 2.0])), [1.0, 2.0])
    dist.barrier()
    monkeypatch.setenv("PMI_SIZE", "2")
    assert dist.launched_under_mpi()
    monkeypatch.setenv("PYCORE_DISTRIBUTED", "0")
    assert not dist.launched_under_mpi()


def test_pycore_imports_and_trains_without_mpi4py(tmp_path):
    """With mpi4py unimportable: a world of one without a launcher; an ImportError that says what
    to install under one (PMI_SIZE set, as mpiexec does)."""
    program = ("import sys; sys.modules['mpi4py'] = None\n"
               "import numpy as np, pycore, pycore.distributed as dist\n"
               "model = dist.DistributedDataParallel(pycore.nn.Linear(3, 2))\n"
               "model(np.ones((4, 3), np.float32)); model.backward(np.ones((4, 2), np.float32))\n"
               "assert dist.world_size() == 1 and model.weight.grad[0, 0] == 4\n"
               "print('ok')\n")
    env = child_process_env()
    for name in dist.world._LAUNCHER_VARIABLES + ("PYCORE_DISTRIBUTED",):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60,
                            cwd=tmp_path)  # outside the source tree (see child_process_env)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    env["PMI_SIZE"] = "2"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60,
                            cwd=tmp_path)  # outside the source tree (see child_process_env)
    assert result.returncode != 0 and "pip install" in result.stderr and "mpi4py" in result.stderr


def test_fit_sets_the_sampler_epoch_from_the_loader_pass_also_after_a_resume(tmp_path):
    """fit(distributed=True) in a world of one: each pass over the loader uses the order
    permutation(seed + pass) (steps_per_epoch=2 over 3 batches a pass: passes span epochs),
    and a resume from a checkpoint written in the middle of pass 0 continues that order."""
    x, y = np.arange(6, dtype=np.float32)[:, None], np.arange(6)
    seen = []

    def record(logits, target):  # a metric that sees every training batch's targets
        seen.append(target.copy())
        return 0.0

    def run(epochs, **fit_args):
        pycore.manual_seed(0)
        model = pycore.nn.Linear(1, 6)
        loader = DataLoader(x, y, batch_size=2, sampler=dist.DistributedSampler(6, seed=4))
        pycore.train.fit(model, pycore.nn.CrossEntropyLoss(), pycore.optim.SGD(model.parameters(), lr=0.1), loader,
                         epochs, metrics=(record,), steps_per_epoch=2, verbose=0, distributed=True, **fit_args)

    run(3)
    orders = [np.random.default_rng(4 + p).permutation(6) for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate(orders))
    seen.clear()
    run(1, callbacks=[pycore.train.ModelCheckpoint(tmp_path / "mid.safetensors")])
    seen.clear()
    run(3, resume=tmp_path / "mid.safetensors")
    np.testing.assert_array_equal(np.concatenate(seen), np.concatenate([orders[0][4:], orders[1]]))


def test_fit_distributed_refuses_an_unsharded_loader_in_a_world_of_one():
    model = pycore.nn.Linear(1, 2)
    loader = DataLoader(np.zeros((4, 1), np.float32), np.zeros(4, np.int64), batch_size=2)
    with pytest.raises(ValueError, match="train_loader.sampler must be a pycore.distributed.DistributedSampler"):
        pycore.train.fit(model, pycore.nn.CrossEntropyLoss(), pycore.optim.SGD(model.parameters(), lr=0.1), loader,
                         1, verbose=0, distributed=True)
    with pytest.raises(ValueError, match="must be a pycore DataLoader"):
        pycore.train.fit(model, pycore.nn.CrossEntropyLoss(), pycore.optim.SGD(model.parameters(), lr=0.1),
                         list(loader), 1, verbose=0, distributed=True)


def test_sampler_matches_pytorch_semantics():
    """Disjoint strided shards of one permutation per epoch, padded by repetition; the order
    changes with set_epoch and is the same for every rank given the same seed and epoch."""
    n, ranks = 11, 4
    samplers = [dist.DistributedSampler(n, num_replicas=ranks, rank=r, seed=9) for r in range(ranks)]
    shards = [s.indices() for s in samplers]
    assert [len(s) for s in samplers] == [3] * ranks
    together = np.stack(shards, axis=1).ravel()  # interleaved back into the permutation order
    np.testing.assert_array_equal(together[:n], np.random.default_rng(9).permutation(n))
    np.testing.assert_array_equal(together[n:], together[:1])  # 12 - 11 = 1 padded from the start
    first = samplers[0].indices()
    samplers[0].set_epoch(1)
    assert not np.array_equal(first, samplers[0].indices())
    plain = dist.DistributedSampler(n, num_replicas=2, rank=1, shuffle=False, drop_last=True)
    np.testing.assert_array_equal(plain.indices(), [1, 3, 5, 7, 9])
    loader = DataLoader(np.arange(n) * 10, batch_size=2, sampler=plain)
    assert len(loader) == 3 and np.concatenate(list(loader)).tolist() == [10, 30, 50, 70, 90]


def test_shard_stream_splits_the_streams_of_one_process():
    """Rank r's StreamBatches(B / R streams) are rows r*B/R.. of the single process' B streams."""
    ids = np.arange(103)
    whole = pycore.datasets.StreamBatches(ids, 4, seq_len=5)
    parts = [pycore.datasets.StreamBatches(dist.shard_stream(ids, 4, num_replicas=2, rank=r), 2, seq_len=5)
             for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for (x, y), (x0, y0), (x1, y1) in zip(whole, *parts):
        np.testing.assert_array_equal(x, np.concatenate([x0, x1]))
        np.testing.assert_array_equal(y, np.concatenate([y0, y1]))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="rank"):
        dist.DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="dataset"):
        dist.DistributedSampler(object())
    with pytest.raises(ValueError, match="multiple of 2"):
        dist.shard_stream(np.arange(100), 3, num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="shuffle=False"):
        DataLoader(np.arange(4), sampler=dist.DistributedSampler(4, num_replicas=1, rank=0), shuffle=True)
    with pytest.raises(TypeError, match="pycore Module"):
        dist.DistributedDataParallel(object())
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        dist.DistributedDataParallel(pycore.nn.Linear(2, 2), bucket_cap_mb=0)
    with pytest.raises(ValueError, match="threads"):
        dist.init(threads=0)
