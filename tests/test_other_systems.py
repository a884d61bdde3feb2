"Tests for what other pruning systems need: PatternLock, the Taylor criterion in a fit, and ramps written in steps"
import math, warnings
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st
from fastai.basics import Callback, SGD, Adam
from fastai.callback.training import GradientAccumulation

from fasterprune.schedules import (SparsitySchedule, from_steps, stepwise, sched_lin, sched_cos_in, sched_pow,
                                   sched_density_exp, one_shot, sched_agp)
from fasterprune.criteria import Taylor, criterion, taylor
from fasterprune.sparsifier import Sparsifier
from fasterprune.callback import SparsifyCallback
from fasterprune.lock import PatternLock, lock_zeros
from fasterprune.demo import digits_learner, digits_cnn

torch.set_num_threads(1)
settings.register_profile('os', max_examples=40, deadline=None)
settings.load_profile('os')


# ---------------------------------------------------------------- ramps written in steps (INC's scheduler)

def _inc_ratio(decay, target, k, K):
    "INC's IterativeScheduler.update_sparsity_ratio (max_sparsity_ratio_per_op 0.98, init 0)"
    a = min(.98, target)
    s = {'cos': lambda: a*(1 - math.cos(k/K*math.pi/2)), 'exp': lambda: 1 - ((1 - a)**(1/K))**k,
         'linear': lambda: a*k/K, 'cube': lambda: a*(k/K)**3}[decay]()
    return min(target, s)

def _inc_plan(target, start, end, freq, decay, n_steps):
    "Sparsity (%) in force at each step and the steps whose beginning changes the masks (INC's BasePruner)"
    K, done = (end - start + freq)//freq - 1, 0
    if K == 0: K, done = 1, 1
    cur, force, changes = 0., [], []
    for t in range(n_steps):
        if start <= t <= end and (t - start) % freq == 0:
            new = _inc_ratio(decay, target, done, K); done += 1
            if new != cur: changes.append(t)
            cur = new
        force.append(100*cur)
    return np.array(force), changes

_DECAYS = {'exp': sched_density_exp, 'cos': sched_cos_in, 'linear': sched_lin, 'cube': partial(sched_pow, power=3)}

@given(start=st.integers(0, 40), length=st.integers(0, 60), freq=st.integers(1, 12), n_batch=st.integers(1, 15),
       decay=st.sampled_from(sorted(_DECAYS)), target=st.sampled_from([.5, .8, .9, .95]))
def test_from_steps_is_inc_schedule(start, length, freq, n_batch, decay, target):
    "For any INC configuration, the sparsity of every step and the steps where masks change are INC's"
    end = start + length
    if start == 0 and length < freq:                      # INC: one shot at step 0, before any training: refused
        with pytest.raises(ValueError, match='Sparsifier.prune'): from_steps(_DECAYS[decay], start, end, freq, n_batch)
        return
    n_epoch = math.ceil((end + 2)/n_batch) + 1
    kw = from_steps(_DECAYS[decay], start, end, freq, n_batch)
    ss = SparsitySchedule(kw.pop('schedule'), 100*target, **kw)
    _, before, recompute = ss.plan(n_epoch, n_batch)
    ref, changes = _inc_plan(target, start, end, freq, decay, n_epoch*n_batch)
    np.testing.assert_allclose([0. if b is None else b for b in before], ref, atol=1e-9)
    assert [i + 1 for i, r in enumerate(recompute) if r] == changes

def test_from_steps_refuses_bad_input():
    with pytest.raises(ValueError, match='Sparsifier.prune'): from_steps(sched_lin, 0, 0)
    for kw, arg in [(dict(start_step=-1, end_step=3), 'start_step'), (dict(start_step=1, end_step=3, every=0), 'every'),
                    (dict(start_step=1, end_step=3, n_batch=0), 'n_batch'), (dict(start_step=5, end_step=3), 'end_step'),
                    (dict(start_step=1.5, end_step=3), 'start_step')]:
        with pytest.raises(ValueError, match=arg): from_steps(sched_lin, **kw)

@given(n=st.floats(.5, 20), pos=st.floats(0, 1))
def test_stepwise_holds_the_last_update(n, pos):
    "stepwise gives the schedule's value at the last k/n <= pos, never more than the value at pos (monotone schedule)"
    v = stepwise(0, 90, pos, sched=sched_lin, n=n)
    k = math.floor(pos*n + 1e-9)
    assert math.isclose(v, 90*min(k/n, 1.), abs_tol=1e-9)
    assert v <= sched_lin(0, 90, pos) + 1e-9


# ---------------------------------------------------------------- Taylor in a fit

class _StepRecorder(Callback):
    "Per optimizer step, |Σ w·g| of every filter of the pruned convs, seen right after the callback's criterion update"
    order = SparsifyCallback.order + 1
    def before_fit(self): self.steps = []
    def before_step(self):
        layers = self.learn.sparsify.sparsifier.layers
        self.steps.append({n: (l.weight.detach()*l.weight.grad).flatten(1).sum(1).abs() for n, l in layers.items()})

@pytest.mark.parametrize('n_acc', [None, 128])
def test_taylor_averages_the_optimizer_steps(n_acc):
    "With and without GradientAccumulation: one update per optimizer step, with the (accumulated) gradient of that step"
    learn = digits_learner()
    crit, rec = Taylor('filter'), _StepRecorder()
    cbs = [SparsifyCallback(0, 'filter', criteria=crit, layer_types=nn.Conv2d), rec]   # 0 %: nothing masked, w as trained
    if n_acc: cbs.append(GradientAccumulation(n_acc))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=cbs)
    n_steps = len(learn.dls.train) // (2 if n_acc else 1)
    assert len(rec.steps) == n_steps
    assert set(crit.state) == {'0', '3', '6'}
    for name in crit.state:
        assert crit.n[name] == n_steps
        ref = torch.stack([s[name] for s in rec.steps]).mean(0)
        torch.testing.assert_close(crit.state[name]/crit.n[name], ref, rtol=1e-4, atol=1e-7)

def test_taylor_prunes_filters_in_a_fit():
    "Filter pruning driven by Taylor('filter') reaches the exact count of dead filters per layer"
    learn = digits_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2, cbs=SparsifyCallback(50, 'filter', criteria=Taylor('filter'), schedule=one_shot, start_epoch=1))
    for i in (0, 3, 6):
        w = learn.model[i].weight.detach()
        assert int((w.flatten(1) == 0).all(1).sum()) == w.shape[0]//2

def test_taylor_squared_and_names():
    assert repr(criterion('taylor')) == "Taylor()"                         # unbound: follows the sparsifier's granularity
    assert repr(Taylor('block4', squared=True)) == "Taylor('block4', squared=True)"
    with pytest.raises(ValueError, match='squared'): Taylor('row', squared='no')


# ---------------------------------------------------------------- PatternLock

@pytest.mark.parametrize('opt', [partial(torch.optim.SGD, lr=.1, momentum=.9, weight_decay=1e-2, nesterov=True),
                                 partial(torch.optim.Adam, lr=1e-2, weight_decay=1e-2),
                                 partial(torch.optim.AdamW, lr=1e-2, weight_decay=.1),
                                 partial(torch.optim.RMSprop, lr=1e-2, momentum=.9)])
def test_lock_zeros_in_a_plain_loop(opt):
    "Random patterns stay exactly zero through any torch optimizer when apply_masks follows every step"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():
        for m in (model[0], model[2]): m.weight.mul_(torch.rand_like(m.weight) > .7)
    zeros = {n: (model.get_submodule(n).weight == 0).clone() for n in ('0', '2')}
    sp = Sparsifier(model)
    locked = lock_zeros(sp)
    assert locked == {n: int(z.sum()) for n, z in zeros.items()}
    o = opt(model.parameters())
    x, y = torch.randn(128, 10), torch.randint(0, 3, (128,))
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        o.zero_grad(); loss.backward(); o.step(); sp.apply_masks()
        for n, z in zeros.items(): assert not model.get_submodule(n).weight[z].any()
    sp.detach()
    for n, z in zeros.items(): assert torch.equal(model.get_submodule(n).weight == 0, z)

def test_pattern_lock_on_conv_transpose_and_frozen_layers():
    "ConvTranspose layers are locked like any other; a frozen layer keeps its zeros without gradients"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    learn = digits_learner(model)
    with torch.no_grad():
        for m in (model[0], model[2]): m.weight.mul_(torch.rand_like(m.weight) > .5)
    zeros = {i: (model[i].weight == 0).clone() for i in (0, 2)}
    model[0].weight.requires_grad_(False)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=PatternLock())
    for i, z in zeros.items(): assert torch.equal(model[i].weight == 0, z)

def test_pattern_lock_holds_after_a_masked_sparsify_fit():
    "Prune with SparsifyCallback(keep_masks=True), then lock: the pattern of the pruning fit is kept"
    learn = digits_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 1e-2, cbs=SparsifyCallback(80, schedule=one_shot, keep_masks=True))
    zeros = (learn.model[3].weight == 0).clone()
    assert int(zeros.sum()) == round(.8*zeros.numel())
    cb = PatternLock()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=cb)
    assert torch.equal(learn.model[3].weight == 0, zeros)
    assert cb.zeros['3'] == int(zeros.sum())
    assert not any('mask' in k for k in learn.model.state_dict())

def test_layer_range_in_a_global_fit():
    "INC's per-op min/max sparsity in 'global' context: every layer ends within the range, the total exact"
    import math
    learn = digits_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2, cbs=SparsifyCallback(80, context='global', schedule=sched_agp, layer_range=(50, 90)))
    ls = [m for m in learn.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    for l in ls:
        n, z = l.weight.numel(), int((l.weight == 0).sum())
        assert math.floor(.5*n) <= z <= n - math.ceil(.1*n), (n, z)
    assert sum(int((l.weight == 0).sum()) for l in ls) == round(.8*sum(l.weight.numel() for l in ls))

def test_layer_range_refused_before_training():
    learn = digits_learner()
    w0 = learn.model[0].weight.detach().clone()
    with pytest.raises(ValueError, match='layer_range'): SparsifyCallback(80, context='global', layer_range=(90, 50))
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match='layer_range'):
        learn.fit(1, 1e-2, cbs=SparsifyCallback(95, context='global', layer_range=(0, 90)))
    assert torch.equal(learn.model[0].weight, w0)

def test_taylor_follows_the_granularity():
    """By name or unbound (`taylor`, `criterion('taylor')`, `Taylor()`), Taylor sums over the structures pruned; a Taylor
    built for other structures is refused before training (issue 23)"""
    for c in ('taylor', taylor, criterion('taylor'), Taylor()):
        assert repr(SparsifyCallback(50, 'filter', criteria=c).criteria) == "Taylor('filter')"
        assert repr(Sparsifier(digits_cnn(), 'block4', criteria=c).criteria) == "Taylor('block4')"
    assert repr(taylor) == "Taylor()"                                       # the shared instance stays unbound
    for c in (Taylor('weight'), Taylor('row')):
        with pytest.raises(ValueError, match=r"criteria Taylor\('(weight|row)'\).*'filter'"): SparsifyCallback(50, 'filter', criteria=c)
        with pytest.raises(ValueError, match="Taylor"): Sparsifier(digits_cnn(), 'filter', criteria=c)
