"Issue 13, items 1, 2, 6 and 8: what the forward pass really uses, tied weights, BatchNorm found through the graph, rounding"
import warnings
import pytest, torch
from torch import nn
from torch.nn.utils import parametrizations, weight_norm, spectral_norm
from fastai.basics import *
from fastai.layers import LinBnDrop, ConvLayer
from fasterprune.all import *
from fasterprune.demo import digits_learner, BasicBlock

def fit(learn, *args, **kwargs):
    with learn.no_bar(), learn.no_logging(): learn.fit(*args, **kwargs)

@pytest.mark.parametrize('wrap', [parametrizations.weight_norm, parametrizations.spectral_norm, weight_norm, spectral_norm])
def test_parametrized_weight_refused_before_training(wrap):
    "The stored tensor is not the weight the forward pass uses: refused at once, naming the layer and the way out"
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    m[2] = wrap(m[2])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match=r"layer '2'.*(remove_parametrizations|remove_weight_norm)"): Sparsifier(m)
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k])
    Sparsifier(m, exclude='2').prune(50)       # the way out that the message names

def test_tied_weights_counted_once():
    "One Parameter in two layers: 'global' counts it once, so the unique weights reach the target exactly"
    a, b = nn.Linear(32, 32), nn.Linear(32, 32)
    b.weight = a.weight
    m = nn.Sequential(nn.Linear(8, 32), a, nn.ReLU(), b, nn.ReLU(), nn.Linear(32, 2))
    sp = Sparsifier(m, context='global')
    sp.prune(90)
    uniq = {id(p): p for l in (m[0], a) for p in [l.weight]}.values()
    n = sum(p.numel() for p in uniq); z = sum(int((p == 0).sum()) for p in uniq)
    assert z == round(.9*n)
    assert sp.tied == {'3': '1'}

def test_tied_weights_conflicting_targets_refused():
    a, b = nn.Linear(16, 16), nn.Linear(16, 16)
    b.weight = a.weight
    m = nn.Sequential(nn.Linear(8, 16), a, b, nn.Linear(16, 2))
    with pytest.raises(ValueError, match="share one weight"): Sparsifier(m, layer_sparsity={'1': 50, '2': 80})
    Sparsifier(m, layer_sparsity={'1': 50, '2': 50}).prune(30)

def dead_outputs(block, x, layer):
    "Largest |output| of `block` on the channels whose filter `layer` pruned"
    dead = ~layer.weight.flatten(1).any(1)
    assert dead.any()
    block.eval()
    with torch.no_grad(): return float(block(x)[:, dead].abs().max())

def tabular_learner_like():
    "fastai's LinBnDrop(lin_first=True): Linear -> ReLU -> BatchNorm1d, where the BatchNorm is not the next module"
    return nn.Sequential(nn.Flatten(), LinBnDrop(64, 200, p=.1, act=nn.ReLU(), lin_first=True),
                         LinBnDrop(200, 100, p=.1, act=nn.ReLU(), lin_first=True), nn.Linear(100, 10))

def test_filter_zeroes_linbndrop_batchnorm_in_a_fit():
    learn = digits_learner(tabular_learner_like)
    fit(learn, 2, 1e-2, cbs=SparsifyCallback(50, 'filter', schedule=sched_agp))
    x = learn.dls.valid.one_batch()[0]
    m = learn.model
    assert dead_outputs(nn.Sequential(m[0], m[1]), x, m[1][0]) == 0.
    h = nn.Sequential(m[0], m[1])(x)
    assert dead_outputs(m[2], h, m[2][0]) == 0.

def test_filter_zeroes_batchnorm_without_example_inputs():
    "A plain Sparsifier (no example_inputs) finds the BatchNorm past activations and dropout too"
    m = tabular_learner_like()
    sp = Sparsifier(m, 'filter'); sp.prune(50)
    assert set(sp._bn) == {'1.0', '2.0'}

@pytest.mark.parametrize('make,x', [
    (lambda: nn.Sequential(ConvLayer(3, 16), ConvLayer(16, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)), torch.randn(4, 3, 8, 8)),
    (lambda: nn.Sequential(BasicBlock(3, 16, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2)), torch.randn(4, 3, 8, 8))])
def test_filter_dead_channels_output_zero_through_the_graph(make, x):
    torch.manual_seed(0)
    m = make()
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.modules.batchnorm._BatchNorm):
                b.running_mean.normal_(); b.running_var.uniform_(.5, 2); b.weight.normal_(); b.bias.normal_()
    sp = Sparsifier(m, 'filter', example_inputs=x); sp.prune(50)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(sp._bn) == len(convs)          # every conv's BatchNorm found
    for c, bn in ((c, sp._bn[n]) for n, c in sp.layers.items() if n in sp._bn):
        dead = ~c.weight_mask.flatten(1).any(1)
        assert (bn.weight[dead] == 0).all() and (bn.bias[dead] == 0).all() and (bn.running_mean[dead] == 0).all()

def test_rounding_that_defeats_the_target_warns():
    "A depthwise conv has one column: 'column' at 50 % prunes nothing; the warning names the layer"
    m = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8, 2))
    sp = Sparsifier(m, 'column')
    with pytest.warns(UserWarning, match=r"'1' \(1 structure"): sp.check_target(50)
    sp.prune(50)
    r = sp.report().set_index('name')
    assert r.loc['1', 'sparsity'] == 0 and r.loc['1', 'target'] == 50
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        Sparsifier(m, 'weight').check_target(50)      # fine-grained: no warning
