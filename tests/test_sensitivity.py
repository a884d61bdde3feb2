"Per-layer sensitivity (`fasterprune.sensitivity`): the model is untouched, units, allocation exact and optimal, bad input"
import itertools, math, warnings
import pandas as pd, pytest, torch
from torch import nn
from fasterprune.sensitivity import sensitivity, sensitivity_targets, plot_sensitivity, _hull
from fasterprune.sparsifier import Sparsifier
from fasterprune.demo import BasicBlock

torch.set_num_threads(1)

def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))

def data(model, n=3, bs=16):
    torch.manual_seed(1)
    xs = [torch.randn(bs, 8) for _ in range(n)]
    with torch.no_grad(): return [(x, model(x).argmax(1)) for x in xs]

acc = lambda p, t: (p.argmax(1) == t).float().mean()
KW = dict(loss_func=nn.CrossEntropyLoss(), metric=acc)

def test_table_and_model_unchanged():
    m = mlp(); m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    df = sensitivity(m, [50, 90], batches=data(m), **KW)
    assert m.training and set(m.state_dict()) == set(before)                   # no masks, no buffers left
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert list(df.columns) == ['unit', 'layers', 'coupled', 'params', 'sparsity', 'loss', 'loss_increase', 'metric', 'metric_drop']
    assert df['unit'].tolist() == ['0']*3 + ['2']*3 and df['sparsity'].tolist() == [0, 50, 90]*2
    assert df['params'].tolist() == [256]*3 + [512]*3 and not df['coupled'].any()
    assert (df[df.sparsity == 0][['loss_increase', 'metric_drop']] == 0).all().all()
    assert df.attrs['layer_params'] == {'0': 256, '2': 512} and df.attrs['base_metric'] == 1.0   # labels = own predictions
    assert df[df.sparsity == 90]['loss_increase'].min() > 0                       # pruning does cost something

def test_only_the_layer_measured_is_pruned():
    "The loss at 100 % of the first layer equals that of the model with that layer zeroed by hand"
    m = mlp(); b = data(m)
    df = sensitivity(m, [100], batches=b, **KW)
    z = mlp()
    with torch.no_grad(): z[0].weight.zero_()
    loss = sum(float(KW['loss_func'](z(x), y))*len(y) for x, y in b)/sum(len(y) for _, y in b)
    assert df[(df.unit == '0') & (df.sparsity == 100)]['loss'].item() == pytest.approx(loss, rel=1e-5)

def resnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), BasicBlock(8, 8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))

def test_residual_producers_form_one_unit():
    m = resnet().eval(); torch.manual_seed(2); x = torch.randn(8, 1, 6, 6)
    with torch.no_grad(): b = [(x, m(x).argmax(1))]
    df = sensitivity(m, [50, 90], batches=b, **KW)
    assert df['unit'].unique().tolist() == ['0+3.conv2', '3.conv1']
    assert df.groupby('unit', sort=False)['coupled'].first().tolist() == [True, False]
    assert df[df.unit == '0+3.conv2']['params'].iloc[0] == 72 + 576
    alone = sensitivity(m, [50], batches=b, coupled=False, **KW)
    assert alone['unit'].unique().tolist() == ['0', '3.conv1', '3.conv2']
    t = sensitivity_targets(df, 70)
    assert abs(t['0'] - t['3.conv2']) <= 100/72       # one target for the unit, up to one weight of rounding
    assert sum(round(t[k]/100*n) for k, n in df.attrs['layer_params'].items()) == round(.7*(72 + 576 + 576))

def table(curves:dict, sizes:dict)->pd.DataFrame:
    rows = [dict(unit=u, layers=u, coupled=False, params=sizes[u], sparsity=s, loss_increase=c, metric_drop=c)
            for u, pts in curves.items() for s, c in [(0., 0.)] + pts]
    df = pd.DataFrame(rows); df.attrs['layer_params'] = dict(sizes); return df

def test_hull():
    assert _hull([0, 50, 75, 100], [0, 3, 3.2, 10]) == [(0, 0), (75, 3.2), (100, 10)]
    assert _hull([0, 50, 100], [0, 1, 2]) in ([(0, 0), (100, 2)], [(0, 0), (50, 1), (100, 2)])

def cost(curves, sizes, t):
    "Predicted cost of targets `t`: each unit's hull, linearly interpolated"
    tot = 0.
    for u, pts in curves.items():
        s, c = zip(*[(0., 0.)] + pts); c = pd.Series(c).cummax().clip(lower=0).tolist()
        h = _hull(list(s), c)
        for (s0, c0), (s1, c1) in zip(h, h[1:]):
            if s0 - 1e-9 <= t[u] <= s1 + 1e-9: tot += c0 + (c1 - c0)*(t[u] - s0)/(s1 - s0); break
    return tot

@pytest.mark.parametrize('target', [30, 60, 85, 95])
def test_allocation_exact_and_no_worse_than_any_grid_point(target):
    curves = {'a': [(50., .1), (90., 2.), (99., 5.)], 'b': [(50., .01), (90., .2), (99., 3.)],
              'c': [(50., .5), (90., .6), (99., .7)]}
    sizes = {'a': 300, 'b': 5000, 'c': 1200}
    t = sensitivity_targets(table(curves, sizes), target)
    K = round(target/100*sum(sizes.values()))
    assert sum(round(t[u]/100*n) for u, n in sizes.items()) == K
    assert all(0 <= v <= 99 + 1e-9 for v in t.values())
    best = min((cost(curves, sizes, dict(zip('abc', g))) for g in itertools.product(range(0, 100), repeat=3)
                if abs(sum(s/100*sizes[u] for s, u in zip(g, 'abc')) - K) <= 0.5), default=math.inf)
    assert cost(curves, sizes, t) <= best + 1e-3

def test_uniform_when_costs_are_equal_per_weight():
    curves = {'a': [(50., 1.), (90., 1.8)], 'b': [(50., 2.), (90., 3.6)]}      # b is twice a, b has twice a's weights
    t = sensitivity_targets(table(curves, {'a': 100, 'b': 200}), 90)
    assert t == {'a': 90., 'b': 90.}

def test_targets_drive_sparsifier_to_the_global_count():
    m = mlp(); df = sensitivity(m, [50, 90, 99], batches=data(m), **KW)
    t = sensitivity_targets(df, 80)
    sp = Sparsifier(m, layer_sparsity=t); sp.prune(80)
    zeros = sum(int((l.weight == 0).sum()) for l in sp.layers.values())
    assert zeros == round(.8*(256 + 512))

def test_bad_input():
    m = mlp(); b = data(m); df = sensitivity(m, [50], batches=b, **KW)
    with pytest.raises(ValueError, match='sparsities'): sensitivity(m, [], batches=b, **KW)
    with pytest.raises(ValueError, match='sparsities'): sensitivity(m, [0, 50], batches=b, **KW)
    with pytest.raises(ValueError, match='sparsities'): sensitivity(m, [101], batches=b, **KW)
    with pytest.raises(ValueError, match='n_batches'): sensitivity(m, batches=b, n_batches=0, **KW)
    with pytest.raises(ValueError, match='loss_func'): sensitivity(m, batches=b)
    with pytest.raises(ValueError, match='batches is empty'): sensitivity(m, batches=[], **KW)
    with pytest.raises(ValueError, match='batches must yield'): sensitivity(m, batches=[torch.randn(2, 8)], **KW)
    with pytest.raises(TypeError, match='coupled'): sensitivity(m, batches=b, coupled='yes', **KW)
    with pytest.raises(TypeError, match='metric'): sensitivity(m, batches=b, loss_func=KW['loss_func'], metric=3)
    with pytest.raises(TypeError, match='learn_or_model'): sensitivity('model', batches=b, **KW)
    with pytest.raises(ValueError, match='max_sparsity'): sensitivity_targets(df, 60)          # measured up to 50 % only
    with pytest.raises(ValueError, match='sparsity must'): sensitivity_targets(df, 120)
    with pytest.raises(ValueError, match='y must'): sensitivity_targets(df, 30, y='loss')
    with pytest.raises(ValueError, match='DataFrame of `sensitivity`'): sensitivity_targets(pd.DataFrame({'a': [1]}), 30)
    with pytest.raises(ValueError, match='y must'): plot_sensitivity(df, y='nope')

def test_plot_one_line_per_unit():
    import matplotlib; matplotlib.use('Agg')
    m = mlp(); df = sensitivity(m, [50, 90], batches=data(m), **KW)
    ax = plot_sensitivity(df)
    assert len(ax.lines) == 2 and [len(l.get_xdata()) for l in ax.lines] == [3, 3]

def test_filter_granularity_leaves_model_and_norms_unchanged():
    m = resnet().eval(); torch.manual_seed(2); x = torch.randn(8, 1, 6, 6)
    with torch.no_grad(): b = [(x, m(x).argmax(1))]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    df = sensitivity(m, [50], 'filter', batches=b, **KW)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())   # BatchNorms of the copy only were touched
    assert not m.training and df[df.sparsity == 50]['loss_increase'].max() > 0

def test_multi_input_batches():
    class Two(nn.Module):
        def __init__(self): super().__init__(); self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)
        def forward(self, x, z): return self.b(torch.relu(self.a(x + z)))
    torch.manual_seed(0); m = Two(); x, z = torch.randn(10, 4), torch.randn(10, 4)
    with torch.no_grad(): y = m(x, z).argmax(1)
    df = sensitivity(m, [50], batches=[(x, z, y)], loss_func=nn.CrossEntropyLoss(), prune_output=True)
    assert df['unit'].unique().tolist() == ['a', 'b'] and df.attrs['metric'] is None
    with pytest.raises(ValueError, match='metric'): sensitivity_targets(df, 30, y='metric_drop')   # no metric measured
