"A compiled model trains with SparsifyCallback without a recompilation at any mask update (issue 22, item 3), on the CPU"
import warnings, torch
from torch import nn
from fastai.basics import DataLoaders, Learner, accuracy
from fasterprune.all import SparsifyCallback, sparsity_report

def test_compiled_fit_no_recompile():
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset(); counters.clear()
    torch.manual_seed(0)
    x = torch.randn(256, 16); y = (x[:, 0] > 0).long()
    dls = DataLoaders.from_dsets(list(zip(x, y)), list(zip(x[:64], y[:64])), bs=32)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    learn = Learner(dls, torch.compile(model), loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    cb = SparsifyCallback(80, 'weight', 'local', prune_every=1)
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn.fit_one_cycle(2, 1e-2, cbs=cb)
    assert cb.fit_run.n_prunes > 10                       # masks changed many times...
    assert counters['stats']['unique_graphs'] <= 2, dict(counters['stats'])   # ...under one training and one validation graph
    r = sparsity_report(model).set_index('name')
    assert r.loc['0', 'zeros'] == round(.8*16*64) and r.loc['2', 'zeros'] == round(.8*64*64)
    with torch.no_grad(): assert torch.allclose(learn.model(x[:8]), model(x[:8]), atol=1e-6)   # the compiled model computes with the pruned weights
