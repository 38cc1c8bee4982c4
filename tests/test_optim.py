"""Optimizers (csrc/optim.cpp) and schedulers against torch.optim: trajectories, state_dicts, bad input."""
import copy
import json

import numpy as np
import pytest

import pycore
import pycore.optim as optim
from pycore.nn import Parameter

torch = pytest.importorskip("torch")

SHAPES = [(5, 3), (7,), (2, 3, 4)]
STEPS = 20
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.5, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.01, maximize=True, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, centered=True, momentum=0.5, maximize=True)),
]
CONFIG_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CONFIGS]


def initial_values(rng, dtype):
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def fixed_gradients(rng, dtype):
    return [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(STEPS)]


def run_pycore(name, options, values, grads_at, steps=STEPS):
    """The parameters' values after each step; grads_at(step, current values) gives the gradients."""
    params = [Parameter(v.copy()) for v in values]
    opt = getattr(optim, name)(params, **options)
    trajectory = []
    for step in range(steps):
        opt.zero_grad()
        for p, g in zip(params, grads_at(step, [p.data for p in params])):
            p.grad += g
        opt.step()
        trajectory.append([p.data.copy() for p in params])
    return trajectory


def run_torch(name, options, values, grads_at, steps=STEPS):
    params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    opt = getattr(torch.optim, name)(params, **options)
    trajectory = []
    for step in range(steps):
        opt.zero_grad()
        for p, g in zip(params, grads_at(step, [p.detach().numpy() for p in params])):
            p.grad = torch.tensor(g)
        opt.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


def assert_same_trajectory(ours, theirs, dtype):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, **TOL[dtype], err_msg=f"step {step}, parameter {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_torch_with_fixed_gradients(simd_path, rng, name, options, dtype):
    values, grads = initial_values(rng, dtype), fixed_gradients(rng, dtype)
    ours = run_pycore(name, options, values, lambda step, _: grads[step])
    theirs = run_torch(name, options, values, lambda step, _: grads[step])
    assert all(x.dtype == dtype for x in ours[-1])
    assert_same_trajectory(ours, theirs, dtype)


@pytest.mark.parametrize("name,options", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_torch_on_a_quadratic(rng, name, options):
    """Gradients from the current parameters: loss = sum(0.5 * a * p^2 - b * p)."""
    values = initial_values(rng, np.float64)
    curvature = [rng.uniform(0.5, 2.0, shape) for shape in SHAPES]
    targets = [rng.standard_normal(shape) for shape in SHAPES]

    def grads_at(step, current):
        return [a * p - b for a, p, b in zip(curvature, current, targets)]

    ours = run_pycore(name, options, values, grads_at)
    theirs = run_torch(name, options, values, grads_at)
    assert_same_trajectory(ours, theirs, np.float64)


def test_param_groups_with_their_own_hyperparameters(rng):
    values, grads = initial_values(rng, np.float64), fixed_gradients(rng, np.float64)
    ours_params = [Parameter(v.copy()) for v in values]
    theirs_params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    ours = optim.SGD([{"params": ours_params[:2]}, {"params": ours_params[2:], "lr": 0.3, "nesterov": True}],
                     lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD([{"params": theirs_params[:2]}, {"params": theirs_params[2:], "lr": 0.3,
                                                               "nesterov": True}], lr=0.1, momentum=0.9)
    for step in range(STEPS):
        for p, q, g in zip(ours_params, theirs_params, grads[step]):
            p.grad[...] = g
            q.grad = torch.tensor(g)
        ours.step()
        theirs.step()
    for p, q in zip(ours_params, theirs_params):
        np.testing.assert_allclose(p.data, q.detach().numpy(), **TOL[np.float64])


def allowed_types_only(value):
    """True when value holds only arrays, Python numbers/str/bool, and lists/dicts of them."""
    if isinstance(value, dict):
        return all(isinstance(k, (int, str)) and allowed_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(allowed_types_only(v) for v in value)
    return isinstance(value, (np.ndarray, bool, int, float, str))


def through_checkpoint(state_dict):
    """What a safetensors + JSON checkpoint gives back: arrays beside a JSON skeleton
    (so integer keys come back as strings, tuples as lists)."""
    arrays = {}

    def strip(value):
        if isinstance(value, np.ndarray):
            arrays[str(len(arrays))] = value.copy()
            return {"__array__": str(len(arrays) - 1)}
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    def restore(value):
        if isinstance(value, dict):
            return arrays[value["__array__"]] if "__array__" in value else {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    return restore(json.loads(json.dumps(strip(state_dict))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,options", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_mid_trajectory(rng, name, options, dtype):
    values, grads = initial_values(rng, dtype), fixed_gradients(rng, dtype)
    uninterrupted = run_pycore(name, options, values, lambda step, _: grads[step])

    params = [Parameter(v.copy()) for v in values]
    opt = getattr(optim, name)(params, **options)
    for step in range(STEPS // 2):
        for p, g in zip(params, grads[step]):
            p.grad[...] = g
        opt.step()
    saved = opt.state_dict()
    assert allowed_types_only(saved)
    saved = through_checkpoint(saved)
    opt.step()  # moving on after the save must not change what was saved

    resumed_params = [Parameter(v.copy()) for v in uninterrupted[STEPS // 2 - 1]]
    resumed = getattr(optim, name)(resumed_params, lr=123.0)  # hyperparameters come from the state_dict
    resumed.load_state_dict(saved)
    for step in range(STEPS // 2, STEPS):
        for p, g in zip(resumed_params, grads[step]):
            p.grad[...] = g
        resumed.step()
    for p, expected in zip(resumed_params, uninterrupted[-1]):
        np.testing.assert_array_equal(p.data, expected)


def test_torch_state_dict_loads_and_continues_like_torch(rng):
    values, grads = initial_values(rng, np.float64), fixed_gradients(rng, np.float64)
    theirs_params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    theirs = torch.optim.Adam(theirs_params, lr=0.01, amsgrad=True, weight_decay=0.05)
    for step in range(STEPS):
        for q, g in zip(theirs_params, grads[step]):
            q.grad = torch.tensor(g)
        theirs.step()
        if step == STEPS // 2 - 1:
            converted = copy.deepcopy(theirs.state_dict())
            converted["state"] = {k: {n: v.numpy() for n, v in s.items()} for k, s in converted["state"].items()}
            ours_params = [Parameter(q.detach().numpy().copy()) for q in theirs_params]
    ours = optim.Adam(ours_params)
    ours.load_state_dict(converted)
    assert ours.param_groups[0]["amsgrad"] and ours.param_groups[0]["lr"] == 0.01
    for step in range(STEPS // 2, STEPS):
        for p, g in zip(ours_params, grads[step]):
            p.grad[...] = g
        ours.step()
    for p, q in zip(ours_params, theirs_params):
        np.testing.assert_allclose(p.data, q.detach().numpy(), **TOL[np.float64])


def test_load_state_dict_rejects_mismatches(rng):
    params = [Parameter(v) for v in initial_values(rng, np.float32)]
    opt = optim.Adam(params, amsgrad=True)
    for p in params:
        p.grad[...] = 1.0
    opt.step()
    good = opt.state_dict()
    fresh = optim.Adam([Parameter(v) for v in initial_values(rng, np.float32)])

    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        fresh.load_state_dict({"state": {}})
    with pytest.raises(ValueError, match="2 parameter group"):
        fresh.load_state_dict({"state": {}, "param_groups": good["param_groups"] * 2})
    fewer = copy.deepcopy(good)
    fewer["param_groups"][0]["params"] = [0, 1]
    with pytest.raises(ValueError, match="holds 2 parameter"):
        fresh.load_state_dict(fewer)
    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][1]["exp_avg"] = np.zeros(8)
    with pytest.raises(ValueError, match=r"state\[1\]\['exp_avg'\]: the saved array has shape \(8,\)"):
        fresh.load_state_dict(wrong_shape)
    missing = copy.deepcopy(good)
    del missing["state"][2]["max_exp_avg_sq"]
    with pytest.raises(ValueError, match=r"missing state entries \['max_exp_avg_sq'\]"):
        fresh.load_state_dict(missing)
    stray = copy.deepcopy(good)
    stray["state"][7] = stray["state"][0]
    with pytest.raises(ValueError, match="names no parameter"):
        fresh.load_state_dict(stray)
    no_lr = copy.deepcopy(good)
    del no_lr["param_groups"][0]["lr"]
    with pytest.raises(ValueError, match=r"lacks the hyperparameter\(s\) \['lr'\]"):
        fresh.load_state_dict(no_lr)
    bad_beta = copy.deepcopy(good)
    bad_beta["param_groups"][0]["betas"] = [0.9, 1.5]
    with pytest.raises(ValueError, match="beta2"):
        fresh.load_state_dict(bad_beta)
    # nothing was changed by the failed loads
    assert fresh.state == {} and fresh.param_groups[0]["amsgrad"] is False
    fresh.load_state_dict(good)
    assert fresh.param_groups[0]["amsgrad"] is True


def test_bad_arguments():
    p = Parameter(np.zeros(3, dtype=np.float32))
    with pytest.raises(TypeError, match="iterable of Parameters"):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match=r"lr: expected a value >= 0.0, got -1.0"):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov momentum requires momentum > 0"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta1"):
        optim.Adam([p], betas=(1.0, 0.9))
    with pytest.raises(TypeError, match="betas"):
        optim.Adam([p], betas=0.9)
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        optim.RMSprop([{"params": [p], "beta": 0.9}])
    with pytest.raises(TypeError, match=r"params\[1\]: expected a Parameter"):
        optim.SGD([p, np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="centered"):
        optim.RMSprop([p], centered="yes")
    opt = optim.Adam([p])
    p.grad = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"grad has dtype float32 and shape \(4,\), expected its data's"):
        opt.step()


def test_zero_grad_and_params_without_grad(rng):
    a, b = Parameter(rng.standard_normal(4)), Parameter(rng.standard_normal(3))
    a.grad[...] = 1.0
    b.grad = None
    before = b.data.copy()
    opt = optim.SGD([a, b], lr=0.5)
    opt.step()
    np.testing.assert_array_equal(b.data, before)
    opt.zero_grad()
    np.testing.assert_array_equal(a.grad, 0.0)


def test_non_contiguous_parameter_data_is_updated(rng):
    values = rng.standard_normal((6, 4))
    grads = rng.standard_normal((6, 4))
    contiguous, fortran = Parameter(values.copy()), Parameter(values.copy())
    fortran.data = np.asfortranarray(values)
    fortran.grad = np.asfortranarray(grads)
    contiguous.grad[...] = grads
    for p in (contiguous, fortran):
        opt = optim.Adam([p], lr=0.1)
        opt.step()
        opt.step()
    np.testing.assert_array_equal(fortran.data, contiguous.data)


def test_same_bits_on_one_and_two_threads(rng):
    values = [rng.standard_normal(100_003).astype(np.float32)]
    grads = [[rng.standard_normal(100_003).astype(np.float32)] for _ in range(3)]
    before = pycore.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            results.append(run_pycore("RMSprop", dict(centered=True, momentum=0.5), values,
                                      lambda step, _: grads[step], steps=3)[-1][0])
    finally:
        pycore.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


# ----------------------------------------------------------------------------
# schedulers

SCHEDULERS = [("StepLR", dict(step_size=3, gamma=0.5)), ("StepLR", dict(step_size=1, gamma=0.9)),
              ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)), ("CosineAnnealingLR", dict(T_max=10))]


def scheduled_rates(module, opt_cls, make_param, name, options, epochs):
    opt = opt_cls([{"params": [make_param()]}, {"params": [make_param()], "lr": 0.3}], lr=0.1, momentum=0.9)
    scheduler = getattr(module, name)(opt, **options)
    rates = [scheduler.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == rates[-1]
    return rates


@pytest.mark.parametrize("name,options", SCHEDULERS)
def test_scheduler_rates_match_torch(name, options):
    epochs = 3 * options.get("T_max", 10)
    ours = scheduled_rates(optim, optim.SGD, lambda: Parameter(np.zeros(2)), name, options, epochs)
    theirs = scheduled_rates(torch.optim.lr_scheduler, torch.optim.SGD,
                             lambda: torch.zeros(2, requires_grad=True), name, options, epochs)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,options", SCHEDULERS)
def test_scheduler_state_dict_round_trip(name, options):
    def fresh():
        opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
        return opt, getattr(optim, name)(opt, **options)

    opt, scheduler = fresh()
    rates = []
    for epoch in range(20):
        if epoch == 8:
            saved = through_checkpoint({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()})
            assert allowed_types_only(saved)
        scheduler.step()
        rates.append(scheduler.get_last_lr())
    opt, scheduler = fresh()
    opt.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    resumed = []
    for _ in range(8, 20):
        scheduler.step()
        resumed.append(scheduler.get_last_lr())
    assert resumed == rates[8:]


def test_scheduler_bad_arguments():
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="optimizer: expected a pycore.optim.Optimizer"):
        optim.StepLR(object(), step_size=2)
    with pytest.raises(ValueError, match="step_size: expected an int >= 1"):
        optim.StepLR(opt, step_size=0)
    with pytest.raises(TypeError, match="T_max: expected an int"):
        optim.CosineAnnealingLR(opt, T_max=2.5)
    with pytest.raises(KeyError, match="initial_lr"):
        optim.CosineAnnealingLR(opt, T_max=5, last_epoch=3)
    scheduler = optim.StepLR(opt, step_size=2)
    with pytest.raises(ValueError, match=r"missing entries \['gamma'\]"):
        scheduler.load_state_dict({k: v for k, v in scheduler.state_dict().items() if k != "gamma"})


# Each builder makes a scheduler from a module (pycore.optim or torch.optim.lr_scheduler) and an
# optimizer with two param groups (lr 0.1 and 0.3, momentum 0.9).
BUILDERS = {
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, [2, 5, 5, 9], gamma=0.5),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=4),
    "LambdaLR": lambda m, o: m.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: 1 / (1 + e)]),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 2.0], total_steps=20),
    "OneCycleLR-3phase-linear": lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=20, three_phase=True,
                                                          anneal_strategy="linear", pct_start=0.25),
    "SequentialLR": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=3),
                                                    m.CosineAnnealingLR(o, T_max=6), m.StepLR(o, 2)],
                                                milestones=[3, 8]),
    "SequentialLR-MultiStep-Lambda": lambda m, o: m.SequentialLR(
        o, [m.LambdaLR(o, lambda e: e / 3), m.MultiStepLR(o, [2, 4])], milestones=[4]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler([m.LinearLR(o, start_factor=0.1, total_iters=3),
                                                         m.StepLR(o, 2, 0.5)]),
    "ReduceLROnPlateau": lambda m, o: m.ReduceLROnPlateau(o, patience=1, cooldown=1, factor=0.5, min_lr=0.02),
    "ReduceLROnPlateau-max-abs": lambda m, o: m.ReduceLROnPlateau(o, mode="max", threshold=0.05,
                                                                  threshold_mode="abs", patience=0),
}
PLATEAU_VALUES = [1, 0.9, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.91, 0.9, 0.9]


def built_rates(module, opt_cls, make_param, name, steps=19, reload_at=None):
    """Rates and momenta per step; with reload_at, the optimizer and scheduler are rebuilt
    there from their state_dicts passed through a checkpoint's JSON."""
    def fresh():
        opt = opt_cls([{"params": [make_param()]}, {"params": [make_param()], "lr": 0.3}], lr=0.1, momentum=0.9)
        return opt, BUILDERS[name](module, opt)

    opt, scheduler = fresh()
    rows = [scheduler.get_last_lr() + [g["momentum"] for g in opt.param_groups]]
    for i in range(steps):
        if i == reload_at:
            saved = through_checkpoint({"optimizer": opt.state_dict(), "scheduler": scheduler.state_dict()})
            opt, scheduler = fresh()
            opt.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
        opt.step()
        scheduler.step(PLATEAU_VALUES[i]) if "Plateau" in name else scheduler.step()
        rows.append(scheduler.get_last_lr() + [g["momentum"] for g in opt.param_groups])
        assert [g["lr"] for g in opt.param_groups] == rows[-1][:2]
    return np.array(rows)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", list(BUILDERS))
def test_more_schedulers_match_torch_and_resume(name):
    """Rates (and OneCycleLR's momenta) equal torch's value for value, and a scheduler rebuilt
    mid-way from its state_dict (through JSON) continues with the same values."""
    ours = built_rates(optim, optim.SGD, lambda: Parameter(np.zeros(2)), name)
    theirs = built_rates(torch.optim.lr_scheduler, torch.optim.SGD, lambda: torch.zeros(2, requires_grad=True), name)
    np.testing.assert_array_equal(ours, theirs)
    resumed = built_rates(optim, optim.SGD, lambda: Parameter(np.zeros(2)), name, reload_at=7)
    np.testing.assert_array_equal(resumed, ours)


def test_one_cycle_cycles_adam_beta1_like_torch():
    ours = optim.Adam([Parameter(np.zeros(2))], lr=0.1)
    theirs = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    a, b = optim.OneCycleLR(ours, max_lr=0.5, total_steps=10), torch.optim.lr_scheduler.OneCycleLR(
        theirs, max_lr=0.5, total_steps=10)
    for _ in range(9):
        ours.step(), theirs.step(), a.step(), b.step()
        assert ours.param_groups[0]["betas"] == theirs.param_groups[0]["betas"]
        assert a.get_last_lr() == b.get_last_lr()


def test_lambda_lr_state_dict_holds_no_function():
    """A function cannot go into a checkpoint: the state holds None per group (as PyTorch does
    for plain functions); the re-created scheduler brings its function back."""
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    scheduler = optim.LambdaLR(opt, lambda e: 0.5 ** e)
    for _ in range(3):
        scheduler.step()
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [None] and state["last_epoch"] == 3
    assert allowed_types_only({k: v for k, v in state.items() if k != "lr_lambdas"})
    again = optim.LambdaLR(optim.SGD([Parameter(np.zeros(2))], lr=0.1), lambda e: 0.5 ** e)
    again.load_state_dict(through_checkpoint(state))
    again.step()
    assert again.get_last_lr() == [0.1 * 0.5 ** 4]


def test_new_scheduler_bad_arguments():
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="start_factor"):
        optim.LinearLR(opt, start_factor=0)
    with pytest.raises(TypeError, match="milestones"):
        optim.MultiStepLR(opt, milestones=3)
    with pytest.raises(ValueError, match="total_steps"):
        optim.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="factor"):
        optim.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(TypeError, match="ReduceLROnPlateau"):
        optim.SequentialLR(opt, [optim.ReduceLROnPlateau(opt)], milestones=[])
    with pytest.raises(ValueError, match="milestones"):
        optim.SequentialLR(opt, [optim.StepLR(opt, 2), optim.StepLR(opt, 3)], milestones=[])
    with pytest.raises(TypeError, match="lr_lambda"):
        optim.LambdaLR(opt, 0.5)
    one_cycle = optim.OneCycleLR(opt, max_lr=1.0, total_steps=2)
    one_cycle.step()
    with pytest.raises(ValueError, match="total_steps=2"):
        one_cycle.step(), one_cycle.step()
    with pytest.raises(ValueError, match="best"):
        plateau = optim.ReduceLROnPlateau(opt)
        plateau.load_state_dict({**plateau.state_dict(), "best": "low"})
