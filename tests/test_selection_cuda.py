"On a GPU the exact selection prunes the same scores as on the CPU, and the Sparsifier's accelerated path waits for nothing; skipped without CUDA"
import copy, warnings, pytest, torch
from torch import nn
import fasterprune.selection as S
from fasterprune.selection import exact_keep
from fasterprune.sparsifier import Sparsifier

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

def cases():
    g = torch.Generator().manual_seed(0)
    n = 3_000_000
    gauss = torch.randn(n, generator=g)
    quant = torch.randint(0, 50, (n,), generator=g).float()
    zeros = torch.where(torch.rand(n, generator=g) < .9, torch.tensor(0.), torch.randn(n, generator=g).abs())
    return [(gauss, k) for k in (1, n//10, n//2, 9*n//10, n - 5)] + [(quant, n//3), (zeros, n//2), (zeros, 19*n//20)]

@cuda
@pytest.mark.parametrize('sampled', [True, False])   # on the CPU side; the GPU always takes the histogram path
def test_cuda_matches_cpu(sampled, monkeypatch):
    if not sampled: monkeypatch.setattr(S, '_select_sampled', lambda *a: False)
    for x, k in cases():
        parts = [x[:1_234_567], x[1_234_567:]]
        cpu = torch.cat(exact_keep(parts, k))
        gpu = torch.cat(exact_keep([p.cuda() for p in parts], k)).cpu()
        assert int((~cpu).sum()) == k and torch.equal(cpu, gpu), (k, int((cpu != gpu).sum()))

@cuda
def test_cuda_min_kept():
    x = torch.randn(2_000_000, generator=torch.Generator().manual_seed(1))
    parts = [x[:1000]*1e-3, x[1000:]]
    k = 1_990_000
    cpu, gpu = exact_keep(parts, k, 10), exact_keep([p.cuda() for p in parts], k, 10)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu)) and int(cpu[0].sum()) == 10

def convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 512),
                         nn.Linear(512, 512), nn.Linear(512, 10))

@cuda
@pytest.mark.parametrize('gran,ctx', [('weight', 'local'), ('weight', 'global'), ('filter', 'local'), ('filter', 'global')])
def test_cuda_sparsifier_sync_free(gran, ctx):
    "Prune (kept values or not) and apply_masks on the GPU make no host sync, and give the CPU's masks and weights"
    cpu, gpu = convnet(), convnet().cuda()
    s1, s2 = Sparsifier(cpu, gran, ctx), Sparsifier(gpu, gran, ctx)
    s2.prune(10); torch.cuda.synchronize()          # the first call attaches the buffers (host work, allowed to wait)
    s1.prune(10)
    for v, keep in ((30, True), (60, True), (60.5, False)):
        torch.cuda.set_sync_debug_mode('error')
        try: s2.prune(v, keep_pruned_values=keep); s2.apply_masks(); s2.apply_masks()
        finally: torch.cuda.set_sync_debug_mode('default')
        s1.prune(v, keep_pruned_values=keep); s1.apply_masks()
        for (n, a), b in zip(s1.layers.items(), s2.layers.values()):
            assert torch.equal(a.weight_mask, b.weight_mask.cpu()), (gran, ctx, v, n)
            assert torch.equal(a.weight.detach(), b.weight.detach().cpu()), (gran, ctx, v, n)
        assert abs(s1.masked() - s2.masked()) < 1e-9

@cuda
def test_cuda_nan_reported():
    "A NaN weight is reported (naming its layer) by the next prune, and by the end-of-fit check"
    m = convnet().cuda(); sp = Sparsifier(m); sp.prune(10)
    with torch.no_grad(): m[3].weight[0, 0, 0, 0] = float('nan')
    sp.prune(20)
    with pytest.raises(ValueError, match="'3'"): sp._check_deferred(wait=True)

if __name__ == '__main__':   # where pytest is not installed
    class _Patch:
        def setattr(self, o, n, v): setattr(o, n, v)
    orig = S._select_sampled
    test_cuda_matches_cpu(True, _Patch()); test_cuda_matches_cpu(False, _Patch()); S._select_sampled = orig
    test_cuda_min_kept(); print('CUDA selection: the same masks as on the CPU')
    for gc in [('weight', 'local'), ('weight', 'global'), ('filter', 'local'), ('filter', 'global')]: test_cuda_sparsifier_sync_free(*gc)
    print('CUDA Sparsifier: no host sync, the masks of the CPU')
