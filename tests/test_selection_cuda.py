"On a GPU (the histogram path) the exact selection prunes the same scores as on the CPU (the sampled pass, or the histogram path); skipped without CUDA"
import pytest, torch
import fasterprune.selection as S
from fasterprune.selection import exact_keep

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

if __name__ == '__main__':   # where pytest is not installed
    class _Patch:
        def setattr(self, o, n, v): setattr(o, n, v)
    orig = S._select_sampled
    test_cuda_matches_cpu(True, _Patch()); test_cuda_matches_cpu(False, _Patch()); S._select_sampled = orig
    test_cuda_min_kept(); print('CUDA selection: the same masks as on the CPU')
