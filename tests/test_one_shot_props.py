"""prune_one_shot's counts on random shapes and sparsities: Wanda exactly round(s·in) per output row, magnitude and
SparseGPT exactly round(s·numel) per layer, N:M exactly M−N per group; Wanda and magnitude keep the kept weights."""
import copy
import torch
from torch import nn
from hypothesis import given, settings, strategies as st
from fasterprune.oneshot import prune_one_shot

torch.set_num_threads(1)

def _model(d_in, d_hid, seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, d_hid), nn.ReLU(), nn.Linear(d_hid, d_in), nn.ReLU(), nn.Linear(d_in, 2))

@settings(max_examples=12, deadline=None)
@given(d_in=st.integers(3, 40), d_hid=st.integers(2, 40), s=st.floats(0, 99), method=st.sampled_from(['magnitude', 'wanda', 'sparsegpt']),
       seed=st.integers(0, 1000))
def test_exact_counts(d_in, d_hid, s, method, seed):
    m0 = _model(d_in, d_hid, seed)
    m = copy.deepcopy(m0)
    x = [torch.randn(5, d_in, generator=torch.Generator().manual_seed(seed)) * (1 + torch.arange(d_in))]
    prune_one_shot(m, x, s, method=method)
    for i in (0, 2):
        w, w0 = m[i].weight, m0[i].weight
        z = (w == 0)
        if method == 'wanda': assert (z.sum(1) == round(s/100 * w.shape[1])).all()
        else: assert int(z.sum()) == round(s/100 * w.numel())
        if method != 'sparsegpt': assert torch.equal(w[~z], w0[~z])
    assert torch.equal(m[4].weight, m0[4].weight)      # the output layer stays dense

@settings(max_examples=8, deadline=None)
@given(groups=st.integers(1, 6), d_hid=st.integers(1, 20), nm=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 8)]),
       method=st.sampled_from(['magnitude', 'wanda', 'sparsegpt']), seed=st.integers(0, 1000))
def test_nm_exact(groups, d_hid, nm, method, seed):
    n, mm = nm
    d_in = groups * mm
    m = nn.Sequential(nn.Linear(d_in, d_hid * mm), nn.ReLU(), nn.Linear(d_hid * mm, 2))
    x = [torch.randn(7, d_in, generator=torch.Generator().manual_seed(seed))]
    prune_one_shot(m, x, 100 * (mm - n) / mm, method=method, granularity=f'{n}:{mm}')
    kept = (m[0].weight != 0).reshape(m[0].weight.shape[0], -1, mm).sum(-1)
    assert (kept == n).all()

def test_half_precision():
    "A bfloat16 model: statistics and updates in float32, weights written back in bfloat16 with exact counts"
    torch.manual_seed(0)
    m0 = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16), nn.GELU(), nn.Linear(16, 4)).to(torch.bfloat16)
    x = [torch.randn(8, 16, dtype=torch.bfloat16) for _ in range(2)]
    for method in ('magnitude', 'wanda', 'sparsegpt'):
        m = copy.deepcopy(m0); prune_one_shot(m, x, 50, method=method)
        assert m[0].weight.dtype == torch.bfloat16
        if method == 'wanda': assert ((m[2].weight == 0).sum(1) == 16).all()
        else: assert int((m[2].weight == 0).sum()) == 256
