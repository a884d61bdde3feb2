"Property and fault tests for fasterprune.criteria"
import numpy as np
import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays, array_shapes

from fasterprune.criteria import (Criterion, FuncCriterion, Movement, MagnitudeIncrease, Snip, SnipMomentum, check_scores,
    criterion, large_final, small_final, squared_final, random_score, movement, magnitude_increase, snip, snip_momentum)

torch.set_num_threads(1)
settings.register_profile('fp', max_examples=60, deadline=None)
settings.load_profile('fp')

NAMES = ['large_final', 'small_final', 'squared_final', 'random', 'movement', 'magnitude_increase', 'snip', 'snip_momentum']

# magnitudes 0 or in [2**-20, 1e3]: no underflow when squared in float32, so w² keeps the order of |w|
_mag = st.one_of(st.just(0.), st.floats(2**-20, 1e3, width=32))
_val = st.builds(lambda m, neg: -m if neg else m, _mag, st.booleans())
weights = arrays(np.float32, array_shapes(min_dims=1, max_dims=4, max_side=5), elements=_val).map(torch.from_numpy)

def _layer(w):
    "A module whose `weight` parameter is `w`"
    m = nn.Module()
    m.weight = nn.Parameter(w.clone())
    return m

def _prepared(name, w_ref, w, g):
    "A fresh criterion `name`, reset on a layer starting at `w_ref`, updated once with gradient `g` at weight `w`"
    c, l = criterion(name), _layer(w_ref)
    c.reset({'fc': l})
    with torch.no_grad(): l.weight.copy_(w)
    l.weight.grad = g.clone()
    c.update({'fc': l})
    return c, l

def _order(x):
    "Pairwise order matrix sign(x_i - x_j) of a flattened tensor"
    x = x.flatten().double()
    return torch.sign(x[:, None] - x[None, :])

@given(weights, st.data())
def test_scores_shape_dtype_finite(w, data):
    w_ref = data.draw(arrays(np.float32, tuple(w.shape), elements=_val).map(torch.from_numpy))
    g = data.draw(arrays(np.float32, tuple(w.shape), elements=_val).map(torch.from_numpy))
    for n in NAMES:
        c, l = _prepared(n, w_ref, w, g)
        s = c('fc', l, l.weight)
        assert s.shape == w.shape and s.dtype == torch.float32 and s.device == w.device, n
        assert torch.isfinite(s).all(), n
        assert not s.requires_grad, n

@given(weights)
def test_magnitude_orderings(w):
    l = _layer(w)
    large, sq, small = (c('fc', l, w) for c in (large_final, squared_final, small_final))
    assert torch.equal(_order(large), _order(w.abs()))
    assert torch.equal(_order(sq), _order(large))
    assert torch.equal(_order(small), -_order(large))
    assert torch.equal(small, -large)

@given(weights, st.data())
def test_movement_and_magnitude_increase_formulas(w, data):
    w_ref = data.draw(arrays(np.float32, tuple(w.shape), elements=_val).map(torch.from_numpy))
    l = _layer(w_ref)
    for c in (movement, magnitude_increase): c.reset({'fc': l})
    wd, rd = w.double(), w_ref.double()
    torch.testing.assert_close(magnitude_increase('fc', l, w).double(), wd.abs() - rd.abs(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(movement('fc', l, w).double(), wd * (wd - rd), rtol=1e-5, atol=1e-6)
    # unchanged weights score 0 for both; no sign crossing -> both agree in sign
    assert (movement('fc', l, w_ref) == 0).all() and (magnitude_increase('fc', l, w_ref) == 0).all()
    same = (torch.sign(w) == torch.sign(w_ref)) & (w != 0)
    mv, mi = (wd * (wd - rd))[same], (wd.abs() - rd.abs())[same]
    assert torch.equal(torch.sign(mv), torch.sign(mi))

def test_movement_differs_from_magnitude_increase():
    l = _layer(torch.tensor([0.01, 1.0, -1.0]))
    for c in (movement, magnitude_increase): c.reset({'fc': l})
    w = torch.tensor([0.21, 1.1, 0.5])
    torch.testing.assert_close(magnitude_increase('fc', l, w), torch.tensor([0.2, 0.1, -0.5]))
    torch.testing.assert_close(movement('fc', l, w), torch.tensor([0.21*0.2, 1.1*0.1, 0.5*1.5]))

@given(st.lists(arrays(np.float32, (3,), elements=st.floats(-10, 10, width=32)), min_size=1, max_size=5),
       st.lists(arrays(np.float32, (3,), elements=st.floats(-10, 10, width=32)), min_size=5, max_size=5),
       st.floats(0, 0.99))
def test_snip_momentum_arithmetic(ws, gs, m):
    c, l = SnipMomentum(momentum=m), _layer(torch.zeros(3))
    c.reset({'fc': l})
    expected = torch.zeros(3, dtype=torch.float64)
    for w, g in zip(ws, gs):
        with torch.no_grad(): l.weight.copy_(torch.from_numpy(w))
        l.weight.grad = torch.from_numpy(g)
        c.update({'fc': l})
        expected = m*expected + (torch.from_numpy(w).double()*torch.from_numpy(g).double()).abs()
    torch.testing.assert_close(c('fc', l, l.weight).double(), expected, rtol=1e-4, atol=1e-3)

def test_snip_momentum_two_updates():
    c, l = SnipMomentum(), _layer(torch.tensor([2., -1.]))
    c.reset({'fc': l})
    l.weight.grad = torch.tensor([0.5, 3.]); c.update({'fc': l})          # a = [1, 3]
    l.weight.grad = torch.tensor([1., 1.]); c.update({'fc': l})           # b = [2, 1]
    torch.testing.assert_close(c('fc', l, l.weight), torch.tensor([0.9*1 + 2, 0.9*3 + 1]))

def test_snip_uses_last_gradient_and_given_weight():
    c, l = Snip(), _layer(torch.tensor([2., -1.]))
    c.reset({'fc': l})
    l.weight.grad = torch.tensor([5., 5.]); c.update({'fc': l})
    l.weight.grad = torch.tensor([0.5, -3.]); c.update({'fc': l})
    torch.testing.assert_close(c('fc', l, l.weight), torch.tensor([1., 3.]))
    torch.testing.assert_close(c('fc', l, torch.tensor([4., 0.])), torch.tensor([2., 0.]))

@pytest.mark.parametrize('name', ['snip', 'snip_momentum'])
def test_update_with_grad_none(name):
    "Fault case: a layer without gradient (frozen) is skipped by update and scoring it fails clearly"
    c = criterion(name)
    live, frozen = _layer(torch.ones(2)), _layer(torch.ones(2))
    frozen.weight.requires_grad_(False)
    layers = {'live': live, 'frozen': frozen}
    c.reset(layers)
    live.weight.grad = torch.tensor([1., 2.])
    c.update(layers)                                      # must not raise
    assert frozen.weight.grad is None
    torch.testing.assert_close(c('live', live, live.weight), torch.tensor([1., 2.]))
    with pytest.raises(RuntimeError, match=f"'{name}'.*'frozen'"): c('frozen', frozen, frozen.weight)
    live.weight.grad = None
    c.update(layers)                                      # grad gone: previous state kept unchanged
    torch.testing.assert_close(c('live', live, live.weight), torch.tensor([1., 2.]))

@pytest.mark.parametrize('name', ['snip', 'snip_momentum'])
def test_gradient_criteria_outside_training(name):
    c, l = criterion(name), _layer(torch.ones(2))
    assert c.needs_grad
    with pytest.raises(RuntimeError, match='seen no gradient'): c('fc', l, l.weight)
    c.reset({'fc': l})
    with pytest.raises(RuntimeError, match="'fc'"): c('fc', l, l.weight)

@pytest.mark.parametrize('name', NAMES)
def test_state_reset_between_fits(name):
    c = criterion(name)
    l1, l2 = _layer(torch.ones(3)), _layer(torch.ones(3))
    c.reset({'a': l1})
    l1.weight.grad = torch.ones(3); c.update({'a': l1})
    c.reset({'b': l2})
    state = getattr(c, 'state', getattr(c, 'refs', {}))
    assert set(state) <= {'b'}, state
    if name in ('snip', 'snip_momentum', 'movement', 'magnitude_increase'):
        with pytest.raises(RuntimeError, match="'a'"): c('a', l1, l1.weight)

def test_magnitude_criteria_keep_no_state():
    for c in (large_final, small_final, squared_final, random_score):
        c.reset({'fc': _layer(torch.ones(2))})
        assert not [v for v in vars(c).values() if isinstance(v, (dict, torch.Tensor))]

def test_random_seeded_by_global_rng():
    w = torch.zeros(4, 5)
    torch.manual_seed(3); a = random_score('fc', None, w)
    torch.manual_seed(3); b = random_score('fc', None, w)
    assert torch.equal(a, b) and ((a >= 0) & (a < 1)).all()

@given(weights, st.data(), st.sampled_from([float('nan'), float('inf'), -float('inf')]))
def test_check_scores_rejects_non_finite(w, data, bad):
    s = w.clone()
    i = data.draw(st.integers(0, s.numel() - 1))
    s.view(-1)[i] = bad
    with pytest.raises(ValueError, match="'enc.fc1'"): check_scores(s, 'enc.fc1', w)

def test_check_scores_shape_dtype():
    w = torch.ones(2, 3)
    assert check_scores(w, 'fc', w) is w
    with pytest.raises(ValueError, match='shape'): check_scores(torch.ones(3, 2), 'fc', w)
    with pytest.raises(ValueError, match='float'): check_scores(torch.ones(2, 3, dtype=torch.int64), 'fc', w)
    with pytest.raises(ValueError, match='Tensor'): check_scores([1.], 'fc')

def test_call_checks_custom_scores():
    class Bad(Criterion):
        name = 'bad'
        def score(self, name, layer, weight): return weight / 0.
    with pytest.raises(ValueError, match="'fc'"): Bad()('fc', None, torch.ones(2))
    with pytest.raises(NotImplementedError): Criterion()('fc', None, torch.ones(2))

@given(st.text(max_size=12).filter(lambda s: s not in NAMES))
def test_criterion_unknown_name(s):
    with pytest.raises(ValueError) as e: criterion(s)
    for n in NAMES: assert n in str(e.value)

def test_criterion_conversions():
    assert criterion(snip) is snip
    for n in NAMES: assert criterion(n).name == n
    assert criterion('movement') is not criterion('movement')
    c = criterion(torch.abs)
    assert isinstance(c, FuncCriterion) and not c.needs_grad
    torch.testing.assert_close(c('fc', None, torch.tensor([-2., 1.])), torch.tensor([2., 1.]))
    for bad in (None, 3, Movement, ['snip']):
        with pytest.raises(ValueError): criterion(bad)
    with pytest.raises(ValueError, match='momentum'): SnipMomentum(momentum=1.5)

def test_scores_do_not_track_grad():
    l = nn.Linear(3, 2)
    for n in NAMES:
        c = criterion(n); c.reset({'fc': l})
        l.weight.grad = torch.ones_like(l.weight); c.update({'fc': l})
        assert not c('fc', l, l.weight).requires_grad
        assert not c.score('fc', l, l.weight).requires_grad, n


def _hooks(m): return sum(len(l._forward_pre_hooks) for l in m.modules())


def test_wanda_leaves_no_hook_after_a_fit_or_a_refused_layer():
    "Wanda's forward pre-hooks go with the fit (SparsifyCallback) or with `detach`; a layer it refuses leaves no hook on the others"
    from fasterprune.all import SparsifyCallback, Sparsifier, criterion, one_shot
    from fasterprune.demo import digits_learner
    learn = digits_learner(lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    learn.fit(1, 1e-3, cbs=SparsifyCallback(50, criteria='wanda', schedule=one_shot))
    assert _hooks(learn.model) == 0
    m = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2), nn.Linear(8, 2))
    w = criterion('wanda')
    with pytest.raises(ValueError, match=r"exclude="): Sparsifier(m, criteria=w).criteria.reset(Sparsifier(m).layers)
    assert _hooks(m) == 0
    sp = Sparsifier(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), criteria=w)
    sp.criteria.reset(sp.layers); assert _hooks(sp.model) == 1
    sp.attach(); sp.detach(); assert _hooks(sp.model) == 0
