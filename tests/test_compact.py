"compact: a physically smaller model with the masked model's outputs, on the model shapes users have"
import warnings
from copy import deepcopy
import pytest, torch
from torch import nn
from fastai.basics import *
from fasterprune.all import *
from fasterprune.demo import digits_learner, digits_cnn, resnet18_32

class CatNet(nn.Module):
    "A residual block, a concatenation with a 1x1 projection, a depthwise conv, Flatten -> Linear"
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.proj, self.dw = nn.Conv2d(8, 4, 1), nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.fc = nn.Linear(12*4*4, 10)
    def forward(self, x):
        a = torch.relu(self.b1(self.c1(x)))
        b = torch.relu(self.b2(self.c2(a)) + a)
        b = torch.relu(self.b3(self.c3(b)))
        c = self.dw(torch.cat([b, self.proj(a)], 1))
        return self.fc(nn.functional.adaptive_avg_pool2d(c, 4).flatten(1))

def mlp(): return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 48), nn.GELU(), nn.Linear(48, 5))
def conv1d(): return nn.Sequential(nn.Conv1d(4, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(), nn.Conv1d(16, 32, 3),
                                   nn.BatchNorm1d(32), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(32, 3))

MODELS = {'digits_cnn': (digits_cnn, (4, 1, 8, 8)), 'catnet': (CatNet, (2, 3, 8, 8)), 'mlp': (mlp, (5, 20)),
          'conv1d': (conv1d, (3, 4, 30)), 'resnet18': (lambda: resnet18_32(width=16), (2, 3, 32, 32))}

def scramble_bn(m):
    "BatchNorm statistics and shifts away from their defaults, so a wrong removal shows in the outputs"
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for b in m.modules():
            if isinstance(b, nn.modules.batchnorm._BatchNorm):
                b.running_mean.normal_(0, .5, generator=g); b.running_var.uniform_(.5, 2, generator=g)
                b.weight.normal_(1, .2, generator=g); b.bias.normal_(0, .5, generator=g)
    return m

def pruned(name, gran, pct=50):
    make, shape = MODELS[name]
    torch.manual_seed(0)
    m = scramble_bn(make()).eval()
    x = torch.randn(*shape)
    sp = Sparsifier(m, gran, example_inputs=x if gran == 'coupled' else None); sp.prune(pct); sp.detach()
    return m, x

def n_params(m): return sum(p.numel() for p in m.parameters())

def assert_same(a, b, xs):
    a.eval(); b.eval()
    with torch.no_grad():
        for x in xs:
            ya, yb = a(x), b(x)
            assert ya.shape == yb.shape
            assert (ya - yb).abs().max() <= 1e-5*max(1., float(ya.abs().max()))

@pytest.mark.parametrize('gran', ['filter', 'coupled', 'row'])   # 'row' leaves biases: constants are folded or kept
@pytest.mark.parametrize('name', list(MODELS))
def test_outputs_equal_and_smaller(name, gran):
    m, x = pruned(name, gran)
    before = deepcopy(m.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        small = compact(m, x)
    assert n_params(small) < n_params(m) if gran != 'row' else n_params(small) <= n_params(m)
    assert_same(m, small, [x, torch.randn_like(x), 3*torch.randn_like(x)])
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k]), k   # the given model is unchanged

def test_coupled_compacts_more_than_filter_on_resnet():
    sizes = {g: n_params(compact(*pruned('resnet18', g))) for g in ['filter', 'coupled']}
    assert sizes['coupled'] < sizes['filter']

def test_coupled_removes_every_pruned_channel():
    "With 'coupled', every pruned group channel goes: a 50 % prune of a plain CNN halves each hidden conv"
    m, x = pruned('digits_cnn', 'coupled')
    small = compact(m, x)
    convs = [l for l in small.modules() if isinstance(l, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64]

def test_constant_channel_folded_into_linear_bias():
    "A dead channel with a bias carries a constant: folded into the next Linear's bias, outputs unchanged"
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid(), nn.Linear(8, 2))
    with torch.no_grad(): m[0].weight[:3] = 0      # rows zero, biases not: sigmoid(b) is a constant input of m[2]
    x = torch.randn(4, 6)
    small = compact(m, x)
    assert small[0].out_features == 5 and small[2].in_features == 5
    assert_same(m, small, [x, torch.randn(7, 6)])

def test_constant_through_zero_padding_is_kept():
    "A constant channel read by a zero-padded conv cannot be folded exactly: kept, and the warning says why"
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1), nn.Flatten(), nn.Linear(3*5*5, 2))
    with torch.no_grad(): m[0].weight[1] = 0; m[0].bias[1] = .5
    x = torch.randn(2, 2, 5, 5)
    with pytest.warns(UserWarning, match='cannot fold'): small = compact(m, x)
    assert small[0].out_channels == 4
    assert_same(m, small, [x])

def test_nothing_dead_returns_equal_copy_and_says_so():
    m = digits_cnn().eval(); x = torch.randn(2, 1, 8, 8)
    with pytest.warns(UserWarning, match='no dead channel'): small = compact(m, x)
    assert small is not m and n_params(small) == n_params(m)
    assert_same(m, small, [x])

def test_bad_inputs_name_the_argument():
    m, x = pruned('digits_cnn', 'filter')
    sd = deepcopy(m.state_dict())
    with pytest.raises(ValueError, match='example_inputs'): compact(m, torch.randn(2, 3, 8, 8))
    with pytest.raises(TypeError, match='model'): compact('model', x)
    for k, v in m.state_dict().items(): assert torch.equal(v, sd[k])

def test_masks_applied_in_the_copy():
    "A model that still carries masks (detached with keep_masks) is compacted from its masked weights"
    m = digits_cnn(); x = torch.randn(2, 1, 8, 8)
    sp = Sparsifier(m, 'filter'); sp.prune(50); sp.detach(keep_masks=True)
    small = compact(m, x)
    assert not has_masks(small) and has_masks(m)
    assert small[0].out_channels == 16

def test_refused_during_a_fit():
    learn = digits_learner()
    class CompactMidFit(Callback):
        def after_epoch(self): compact(self.learn.model, self.learn.dls.one_batch()[0])
    with learn.no_bar(), learn.no_logging(), pytest.raises(ValueError, match='being pruned'):
        learn.fit(1, 1e-2, cbs=[SparsifyCallback(50, 'filter'), CompactMidFit()])

def test_learner_compact_then_fit_goes_on():
    learn = digits_learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(2, 1e-2, cbs=SparsifyCallback(50, 'coupled', schedule=sched_agp))
        acc = learn.validate()[1]
        learn.compact()
        assert learn.model[0].out_channels == 16
        assert abs(learn.validate()[1] - acc) < 1e-6          # same predictions
        learn.fit(1, 1e-3)
    assert learn.validate()[1] > .5

class SliceNet(nn.Module):
    "A slice after a concatenation: the dependency graph cannot map those channels"
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 6, 1), nn.Conv2d(12, 4, 1)
    def forward(self, x): return self.c(torch.cat([self.a(x), self.b(x)], 1)[:, :12]).mean((2, 3))

def test_untraceable_coupling_stays_exact():
    "Where the graph cannot map channels, compact keeps them (and says so) rather than change the outputs"
    torch.manual_seed(0)
    m = SliceNet()
    with torch.no_grad(): m.a.weight[:4] = 0; m.a.bias[:4] = 0; m.b.weight[:3] = 0; m.b.bias[:3] = 0
    x = torch.randn(2, 3, 4, 4)
    with pytest.warns(UserWarning, match="kept dead channels.*'a': 4"): small = compact(m, x)
    assert (small.a.out_channels, small.b.out_channels, small.c.in_channels) == (8, 6, 12)
    assert_same(m, small, [x, torch.randn_like(x)])


def zero_rows(m): return int((m.weight.detach().flatten(1) == 0).all(1).sum())

def check_report_names_every_kept_channel(m, small, x):
    r = compact_report(m, small, x).set_index('name')
    convs = {n: l for n, l in small.named_modules() if isinstance(l, (nn.Conv2d, nn.Linear))}
    for n, l in convs.items():
        assert r.loc[n, 'dead_kept'] == zero_rows(l), n
        if zero_rows(l): assert r.loc[n, 'why_kept'], n
    assert r.loc['total', 'dead_kept'] == sum(zero_rows(l) for l in convs.values())
    return r

def test_grouped_conv_named_in_report():
    "Zero filters feeding a grouped conv cannot go one by one: compact keeps them, the report names the layers and why"
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(),
                      nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()
    x = torch.randn(2, 3, 6, 6)
    sp = Sparsifier(m, 'filter'); sp.prune(50); sp.detach()
    with pytest.warns(UserWarning, match="kept dead channels.*grouped convolution"): small = compact(m, x)
    r = check_report_names_every_kept_channel(m, small, x)
    assert r.loc['0', 'dead_kept'] == 4 and 'grouped convolution' in r.loc['0', 'why_kept']
    assert small[4].out_channels == 8                       # the plain conv's dead filters did go
    assert r.loc['4', 'dead_kept'] == 0
    assert_same(m, small, [x])

def test_partly_dead_residual_channels_named():
    "'filter' on a residual net zeroes channels that the other side of an addition keeps: named as coupled"
    m, x = pruned('resnet18', 'filter')
    with pytest.warns(UserWarning, match="coupled"): small = compact(m, x)
    r = check_report_names_every_kept_channel(m, small, x)
    assert r.why_kept.str.contains('coupled').any()

def test_regnet_grouped_convs_named():
    "The issue's example: timm regnetx_002, 'filter' 50 %: the kept channels are named with their reason"
    timm = pytest.importorskip('timm')
    torch.manual_seed(0)
    m = timm.create_model('regnetx_002', pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    sp = Sparsifier(m, 'filter'); sp.prune(50); sp.detach()
    with pytest.warns(UserWarning, match='grouped convolution'): small = compact(m, x)
    r = check_report_names_every_kept_channel(m, small, x)
    assert r.why_kept.str.contains('grouped convolution').any() and r.loc['total', 'dead_kept'] > 0
    assert_same(m, small, [x])

def test_report_of_a_copy_says_not_recorded():
    m, x = pruned('digits_cnn', 'filter')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); small = compact(m, x)
    other = deepcopy(small)
    with torch.no_grad(): other[0].weight[0] = 0
    r = compact_report(m, other, x).set_index('name')
    assert r.loc['0', 'dead_kept'] >= 1 and 'not recorded' in r.loc['0', 'why_kept']

def test_multihead_attention_rows_named():
    "Zero rows of nn.MultiheadAttention's packed in_proj_weight cannot go (the stock module has a fixed width): named"
    torch.manual_seed(0)
    m = nn.Sequential(nn.TransformerEncoderLayer(16, 4, 32, dropout=0., batch_first=True), nn.Flatten(), nn.Linear(5*16, 2)).eval()
    with torch.no_grad(): m[0].self_attn.in_proj_weight[:4] = 0
    x = torch.randn(2, 5, 16)
    with pytest.warns(UserWarning, match='MultiheadAttention'): small = compact(m, x)
    r = compact_report(m, small, x).set_index('name')
    assert r.loc['0.self_attn', 'dead_kept'] == 4 and 'MultiheadAttention' in r.loc['0.self_attn', 'why_kept']
    assert_same(m, small, [x])
