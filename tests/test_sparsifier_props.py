"""Property tests of the sparsifier: exact counts for every granularity x context, ties, N:M and block structure,
shapes a pattern does not fit, empty selections, NaN/inf weights.

Counts and structures are checked with code written here, independently of `Granularity.reduce`."""
import math, warnings
from contextlib import contextmanager
import numpy as np, pytest, torch
from torch import nn
from hypothesis import given, settings, assume, HealthCheck, strategies as st
from fasterprune.granularity import *
from fasterprune.sparsifier import *
import fasterprune.selection as SEL

SET = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KINDS = ['linear', 'conv1d', 'conv2d', 'conv3d', 'convT2d']
GRANS = ['weight', 'row', 'column', 'kernel', 'filter', 'channel', 'block2', 'block4', '2:4', '1:4', '1:2']
WEIGHTS = ['randn', 'equal', 'half_zero', 'quantized', 'zero']

@contextmanager
def engine(radix):
    "radix=True forces the radix-selection path (it normally starts above 65536 scores) with 64-element chunks"
    old = SEL._SMALL, SEL._CHUNK
    if radix: SEL._SMALL, SEL._CHUNK = 0, 64
    try: yield
    finally: SEL._SMALL, SEL._CHUNK = old

def _parts(g):
    "(output multiple, input multiple, NM group) a layer needs for granularity name `g`"
    if g.startswith('block'): return int(g[5:]), 1, None
    if ':' in g: n, m = map(int, g.split(':')); return 1, m, (n, m)
    return 1, 1, None

@st.composite
def layer_specs(draw, g, n_max=3):
    "1..n_max layer specs (kind, in, out, kernel) that granularity `g` fits"
    mo, mi, _ = _parts(g)
    kinds = KINDS[1:] if g == 'kernel' else KINDS
    return [(draw(st.sampled_from(kinds)), mi*draw(st.integers(1, 4)), mo*draw(st.integers(1, 4)), draw(st.integers(1, 3)))
            for _ in range(draw(st.integers(1, n_max)))]

def make_layer(kind, i, o, k):
    return {'linear': lambda: nn.Linear(i, o), 'conv1d': lambda: nn.Conv1d(i, o, k), 'conv2d': lambda: nn.Conv2d(i, o, k),
            'conv3d': lambda: nn.Conv3d(i, o, min(k, 2)), 'convT2d': lambda: nn.ConvTranspose2d(i, o, k)}[kind]()

def make_model(specs, wmode, seed):
    torch.manual_seed(seed)
    m = nn.Sequential(*[make_layer(*s) for s in specs])
    with torch.no_grad():
        for l in m:
            w = l.weight
            if wmode == 'equal': w.fill_(0.25)
            elif wmode == 'half_zero': w.mul_(torch.rand_like(w) < .5)
            elif wmode == 'quantized': w.copy_(torch.randint(-2, 3, w.shape).float())
            elif wmode == 'zero': w.zero_()
    return m

def canon(layer, t):
    "(out, in, *k) view, written independently of the library (groups=1 here)"
    return t.transpose(0, 1) if isinstance(layer, nn.ConvTranspose2d) else t

def structures(g, shape):
    "Independent count of structures of granularity name `g` for a (out, in, *k) shape"
    o, i = shape[:2]
    if g in ('row', 'filter', 'channel'): return o
    if g == 'column': return i
    if g == 'kernel': return o*i
    if g.startswith('block'): return math.prod(shape)//int(g[5:])
    return math.prod(shape)

def pruned(g, keep_c):
    "Pruned structures in a canonical keep mask; asserts that every structure is all kept or all pruned"
    pr = ~keep_c
    o, i = pr.shape[:2]
    if g == 'weight' or ':' in g: return int(pr.sum())
    if g in ('row', 'filter', 'channel'): grp = pr.reshape(o, 1, -1)
    elif g == 'column': grp = pr.transpose(0, 1).reshape(i, 1, -1)
    elif g == 'kernel': grp = pr.reshape(o*i, 1, -1)
    else: s = int(g[5:]); grp = pr.reshape(o//s, s, -1).transpose(1, 2).reshape(-1, 1, s)
    grp = grp.reshape(grp.shape[0]*grp.shape[1], -1) if g.startswith('block') else grp.reshape(grp.shape[0], -1)
    assert (grp.all(1) | (~grp).all(1)).all(), f"a {g} structure is partly pruned"
    return int(grp.all(1).sum())

def layer_facts(sp, g):
    "[(n_structures, n_pruned)] per selected layer, and a check that masked weights are exact zeros"
    res = []
    for l in sp.layers.values():
        m = l.weight_mask
        assert m.dtype == torch.bool and m.shape == l.weight.shape
        assert (l.weight[~m] == 0).all()
        c = canon(l, m)
        res.append((structures(g, c.shape), pruned(g, c)))
    return res

def sparsities(g):
    top = granularity(g).max_sparsity
    return st.one_of(st.sampled_from([0., top, top/2]), st.floats(0, top))

# ---------------------------------------------------------------- exact counts

@SET
@given(st.data(), st.sampled_from(GRANS), st.sampled_from(WEIGHTS), st.integers(0, 2**16))
def test_local_exact_counts(data, g, wmode, seed):
    specs = data.draw(layer_specs(g))
    s = data.draw(sparsities(g))
    sp = Sparsifier(make_model(specs, wmode, seed), g, 'local', prune_output=True)
    with engine(data.draw(st.booleans())): sp.prune(s)
    for n, p in layer_facts(sp, g): assert p == round(s/100*n), (g, s, n, p)

@SET
@given(st.data(), st.sampled_from(GRANS), st.sampled_from(WEIGHTS), st.integers(0, 2**16), st.integers(0, 2))
def test_global_exact_counts(data, g, wmode, seed, min_kept):
    specs = data.draw(layer_specs(g))
    s = data.draw(sparsities(g))
    sp = Sparsifier(make_model(specs, wmode, seed), g, 'global', prune_output=True, min_kept=min_kept)
    ns = [structures(g, canon(l, l.weight).shape) for l in sp.layers.values()]
    k = round(s/100*sum(ns))
    if ':' not in g and k > sum(ns) - sum(min(min_kept, n) for n in ns):
        with pytest.raises(ValueError, match='min_kept'): sp.prune(s)
        return
    with engine(data.draw(st.booleans())): sp.prune(s)
    facts = layer_facts(sp, g)
    assert sum(p for _, p in facts) == k
    nm = granularity(g)
    for n, p in facts:
        if isinstance(nm, NM): assert (n - p)*nm.group >= n*nm.kept      # the pattern always leaves `kept` per group
        else: assert n - p >= min(min_kept, n), "a layer lost more than min_kept allows"

@SET
@given(st.data(), st.sampled_from(['local', 'global']), st.sampled_from(WEIGHTS), st.integers(0, 2**16), st.integers(0, 3))
def test_weight_matches_reference(data, ctx, wmode, seed, min_kept):
    "'weight' + large_final prunes exactly the first k of (|w|, position) order (global: layer order first)"
    specs = data.draw(layer_specs('weight'))
    s = data.draw(st.floats(0, 100))
    m = make_model(specs, wmode, seed)
    ws = [l.weight.detach().abs().reshape(-1).clone() for l in m]
    sp = Sparsifier(m, 'weight', ctx, prune_output=True, min_kept=min_kept if ctx == 'global' else 1)
    mk = min_kept if ctx == 'global' else 0
    groups = [ws] if ctx == 'global' else [[w] for w in ws]
    ks = [round(s/100*sum(w.numel() for w in grp)) for grp in groups]
    if ctx == 'global' and ks[0] > sum(w.numel() for w in ws) - sum(min(mk, w.numel()) for w in ws):
        with pytest.raises(ValueError): sp.prune(s)
        return
    with engine(data.draw(st.booleans())): sp.prune(s)
    expect = []
    for grp, k in zip(groups, ks):
        a = torch.cat(grp).numpy()
        lay = np.concatenate([np.full(w.numel(), j) for j, w in enumerate(grp)])
        left = np.array([w.numel() for w in grp])
        keep = np.ones(a.size, bool)
        for j in np.argsort(a, kind='stable'):
            if k == 0: break
            if left[lay[j]] > min(mk, grp[lay[j]].numel()): keep[j] = False; left[lay[j]] -= 1; k -= 1
        expect.append(keep)
    got = np.concatenate([l.weight_mask.reshape(-1).numpy() for l in m])
    assert (got == np.concatenate(expect)).all()

@SET
@given(st.data(), st.sampled_from(GRANS), st.sampled_from(['local', 'global']), st.integers(0, 2**16))
def test_reprune_with_ties(data, g, ctx, seed):
    "Re-pruning (so the threshold falls among zeros, or all weights are equal) keeps counts exact"
    specs = data.draw(layer_specs(g))
    s1, s2 = data.draw(sparsities(g)), data.draw(sparsities(g))
    sp = Sparsifier(make_model(specs, data.draw(st.sampled_from(['randn', 'equal'])), seed), g, ctx, prune_output=True, min_kept=0)
    radix = data.draw(st.booleans())
    for s in (s1, s2, s2):
        with engine(radix): sp.prune(s)
        facts = layer_facts(sp, g)
        if ctx == 'local':
            for n, p in facts: assert p == round(s/100*n)
        else: assert sum(p for _, p in facts) == round(s/100*sum(n for n, _ in facts))

# ---------------------------------------------------------------- N:M and blocks, structurally

@SET
@given(st.data(), st.sampled_from([(2, 4), (1, 4), (1, 2), (3, 4), (2, 8)]), st.sampled_from(['local', 'global']),
       st.sampled_from(WEIGHTS), st.integers(0, 2**16))
def test_nm_structure(data, nm, ctx, wmode, seed):
    n_kept, group = nm
    g = f'{n_kept}:{group}'
    specs = data.draw(layer_specs(g))
    top = 100*(group - n_kept)/group
    s = data.draw(st.one_of(st.just(top), st.floats(0, top)))
    m = make_model(specs, wmode, seed)
    before = [canon(l, l.weight.detach().abs()).clone() for l in m]
    sp = Sparsifier(m, NM(kept=n_kept, group=group), ctx, prune_output=True)
    with engine(data.draw(st.booleans())): sp.prune(s)
    for l, a in zip(m, before):
        pr = canon(l, ~l.weight_mask)
        per = pr.movedim(1, -1).reshape(-1, group)           # groups of `group` consecutive inputs
        assert per.sum(1).max() <= group - n_kept
        w = canon(l, l.weight.detach()).movedim(1, -1).reshape(-1, group)
        if s == top:
            assert (per.sum(1) == group - n_kept).all()
            assert ((w == 0).sum(1) >= group - n_kept).all()
            # the pruned ones are the smallest |w| of their group (ties: earlier position first)
            order = torch.from_numpy(np.argsort(a.movedim(1, -1).reshape(-1, group).numpy(), axis=1, kind='stable'))
            exp = torch.zeros_like(per)
            exp.scatter_(1, order[:, :group - n_kept], True)
            assert (exp == per).all()
    with pytest.raises(ValueError): sp.prune(top + 1)
    with pytest.raises(ValueError): sp.check_target(top/2 if top/2 > 0 else 1)

@SET
@given(st.data(), st.sampled_from([2, 3, 4]), st.sampled_from(['local', 'global']), st.integers(0, 2**16))
def test_block_structure(data, size, ctx, seed):
    g = f'block{size}'
    specs = data.draw(layer_specs(g))
    s = data.draw(st.floats(0, 100))
    m = make_model(specs, 'randn', seed)
    sp = Sparsifier(m, Block(size=size), ctx, prune_output=True, min_kept=0)
    sp.prune(s)
    for l in m:
        pr = canon(l, ~l.weight_mask)
        blocks = pr.reshape(pr.shape[0]//size, size, -1)   # S contiguous outputs at each input position
        assert (blocks.all(1) == blocks.any(1)).all()

# ---------------------------------------------------------------- errors

@SET
@given(st.sampled_from(['2:4', '1:4', 'block4', 'block3', 'kernel']), st.integers(0, 2**16), st.data())
def test_pattern_does_not_fit(g, seed, data):
    mo, mi, _ = _parts(g)
    good = data.draw(layer_specs(g, 2))
    if g == 'kernel': bad = ('linear', 4, 4, 1)
    elif mi > 1: bad = (data.draw(st.sampled_from(KINDS)), mi*data.draw(st.integers(1, 3)) + data.draw(st.integers(1, mi-1)), 4, 2)
    else: bad = (data.draw(st.sampled_from(KINDS)), 4, mo*data.draw(st.integers(1, 3)) + data.draw(st.integers(1, mo-1)), 2)
    pos = data.draw(st.integers(0, len(good)))
    specs = good[:pos] + [bad] + good[pos:]
    m = make_model(specs, 'randn', seed)
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=f"'{pos}'"): Sparsifier(m, g, prune_output=True)
    assert set(m.state_dict()) == set(sd) and all((m.state_dict()[k] == v).all() for k, v in sd.items())

def test_empty_selection():
    with pytest.raises(ValueError, match='No layer selected'): Sparsifier(nn.Sequential(nn.Linear(3, 2)))  # only the output layer
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match='No layer selected'): Sparsifier(m, exclude='0')
    with pytest.raises(ValueError, match='No layer selected'): Sparsifier(m, layer_types=(nn.Conv1d,))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(ValueError, match='No layer selected'): Sparsifier(m, include='conv*')
    with pytest.raises(ValueError, match='No layer selected'): Sparsifier(nn.Sequential(nn.ReLU()))
    assert list(Sparsifier(m).layers) == ['0']

@SET
@given(st.data(), st.sampled_from(['nan', 'inf', '-inf']), st.sampled_from(['local', 'global']), st.integers(0, 2**16))
def test_nonfinite_weights(data, bad, ctx, seed):
    specs = data.draw(layer_specs('weight'))
    m = make_model(specs, 'randn', seed)
    j = data.draw(st.integers(0, len(specs) - 1))
    w = m[j].weight
    pos = data.draw(st.integers(0, w.numel() - 1))
    with torch.no_grad(): w.view(-1)[pos] = float(bad)
    with pytest.raises(ValueError, match=f"layer '{j}'"): Sparsifier(m, context=ctx, prune_output=True)
    with torch.no_grad(): w.view(-1)[pos] = 0.
    sp = Sparsifier(m, context=ctx, prune_output=True, min_kept=0)   # tiny layers: min_kept=1 could refuse 30 % 'global'
    sp.prune(30)
    masks = [l.weight_mask.clone() for l in m]
    with torch.no_grad(): w.view(-1)[pos] = float(bad)
    with pytest.raises(ValueError, match=f"layer '{j}'"): sp.prune(60)
    assert all((l.weight_mask == mk).all() for l, mk in zip(m, masks)), "a failed prune changed masks"

def test_nonfinite_scores():
    from fasterprune.criteria import FuncCriterion
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    for ctx in ('local', 'global'):
        sp = Sparsifier(m, criteria=FuncCriterion(lambda w: w/0.), context=ctx, prune_output=True)
        with pytest.raises(ValueError, match="layer '0'"): sp.prune(50)

# ---------------------------------------------------------------- filters, checkpoints

@SET
@given(st.floats(0, 100), st.sampled_from(['local', 'global']), st.integers(0, 2**16))
def test_filter_kills_bias_and_bn(s, ctx, seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 1), nn.BatchNorm2d(6), nn.Flatten(), nn.LazyLinear(2))
    m(torch.randn(2, 3, 5, 5))
    with torch.no_grad():
        for bn in (m[1], m[4]): bn.weight.uniform_(.5, 1.5); bn.bias.uniform_(.1, 1)
    sp = Sparsifier(m, 'filter', ctx, min_kept=0)
    sp.prune(s)
    for c, bn in ((m[0], m[1]), (m[3], m[4])):
        dead = ~c.weight_mask.flatten(1).any(1)
        assert (c.bias[dead] == 0).all() and (bn.weight[dead] == 0).all() and (bn.bias[dead] == 0).all()
        assert (bn.weight[~dead] != 0).all()
    m.eval()
    out = m[:2](torch.randn(2, 3, 5, 5))
    assert (out[:, ~m[0].weight_mask.flatten(1).any(1)] == 0).all()

@SET
@given(st.floats(0, 100), st.booleans(), st.integers(0, 2**16))
def test_checkpoint_round_trip(s, keep, seed):
    torch.manual_seed(seed)
    src = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(4, 2))
    sp = Sparsifier(src); sp.prune(s, keep_pruned_values=keep)
    sd = src.state_dict()
    dst = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(4, 2))
    Sparsifier(dst).attach()
    dst.load_state_dict(sd)                           # strict: masks (and pruned values) load
    for a, b in zip(src, dst): assert all((a.state_dict()[k] == b.state_dict()[k]).all() for k in a.state_dict())
    dense = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(4, 2)).state_dict()
    dst.load_state_dict(dense)                        # strict: no masks in the checkpoint
    assert dst[0].weight_mask.all() and (dst[0].weight == dense['0.weight']).all()
