"""GPU: the pruning cost next to a real training step, and one global step at 1B weights (issue 15's GPU checks).

Run on a CUDA machine: python bench/gpu_cost.py   (writes bench/results/gpu_cost.md and .json)

(a) A ResNet-50-shaped network (plain torch, defined below), bf16 autocast, channels_last, batch 128 of 224x224,
    SGD with momentum: the median training step, and the median `Sparsifier.prune` with kept values (what
    SparsifyCallback runs on a batch where masks are recomputed) and `apply_masks` (every batch), 'weight' 'local'.
(b) One 'global' `Sparsifier.prune(90)` on a stack of Linear(8192, 8192) layers holding 1.07B weights (fp32):
    time and peak CUDA memory above the model's own."""
import sys, time, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent)); sys.path.insert(0, str(Path(__file__).parent.parent))
import torch
from torch import nn
from fasterprune.sparsifier import Sparsifier
import _common

CONFIG = dict(resnet50=dict(batch=128, size=224, dtype='bfloat16', channels_last=True, steps=20, warmup=5, sparsity=90,
                            granularity='weight', context='local'),
              linear_1b=dict(layers=16, width=8192, sparsity=90, context='global', repeats=3))

class Bottleneck(nn.Module):
    "1x1 -> 3x3 -> 1x1 conv-BN block with a residual addition (He et al. 2016)"
    def __init__(self, ni, nf, stride=1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ni, nf, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(),
                                  nn.Conv2d(nf, nf, 3, stride, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(),
                                  nn.Conv2d(nf, 4*nf, 1, bias=False), nn.BatchNorm2d(4*nf))
        self.short = (nn.Sequential(nn.Conv2d(ni, 4*nf, 1, stride, bias=False), nn.BatchNorm2d(4*nf))
                      if stride != 1 or ni != 4*nf else nn.Identity())
    def forward(self, x): return torch.relu(self.body(x) + self.short(x))

def resnet50(n_out=1000):
    layers, ni = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)], 64
    for i, (nf, n) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for j in range(n): layers.append(Bottleneck(ni, nf, 2 if (j == 0 and i > 0) else 1)); ni = 4*nf
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ni, n_out))

def cuda_ms(f, n, warmup):
    "Median milliseconds of `f()` over `n` calls after `warmup`, timed with CUDA events"
    ts = []
    for i in range(warmup + n):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); torch.cuda.synchronize()
        if i >= warmup: ts.append(a.elapsed_time(b))
    return statistics.median(ts)

def bench_resnet50(c):
    torch.manual_seed(0)
    m = resnet50().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(c['batch'], 3, c['size'], c['size'], device='cuda').to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (c['batch'],), device='cuda')
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=.9, weight_decay=5e-5)
    def step():
        with torch.autocast('cuda', dtype=torch.bfloat16): loss = nn.functional.cross_entropy(m(x), y)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    sp = Sparsifier(m, c['granularity'], c['context'])
    sp.prune(50, keep_pruned_values=True)
    s = iter(range(10**6))
    prune = lambda: sp.prune(50 + 40*(next(s) % 2), keep_pruned_values=True)   # 50 <-> 90: masks change each call
    step_ms = cuda_ms(step, c['steps'], c['warmup'])
    prune_ms = cuda_ms(prune, c['steps'], c['warmup'])
    apply_ms = cuda_ms(sp.apply_masks, c['steps'], c['warmup'])
    n = sum(l.weight.numel() for l in sp.layers.values())
    return dict(weights=n, step_ms=step_ms, prune_ms=prune_ms, apply_masks_ms=apply_ms,
                share_recompute_every_batch=(prune_ms)/step_ms, share_apply_only=apply_ms/step_ms)

def bench_linear_1b(c):
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Linear(c['width'], c['width'], bias=False) for _ in range(c['layers'])]).cuda()
    n = sum(p.numel() for p in m.parameters())
    sp = Sparsifier(m, 'weight', c['context'], prune_output=True)
    times, peaks = [], []
    for _ in range(c['repeats']):
        with torch.no_grad():
            for l in m: l.weight.normal_()
        sp.detach()
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        t = time.perf_counter(); sp.prune(c['sparsity']); torch.cuda.synchronize(); times.append(time.perf_counter() - t)
        peaks.append(torch.cuda.max_memory_allocated() - base)
    pruned = sum(int((~l.weight_mask).sum()) for l in m)      # counted from the masks: normal_() draws a few exact zeros
    return dict(weights=n, seconds=times, median_s=statistics.median(times), peak_extra_MB=max(peaks)/2**20,
                pruned=pruned, target=round(c['sparsity']/100*n), exact=pruned == round(c['sparsity']/100*n))

if __name__ == '__main__':
    assert torch.cuda.is_available(), "this benchmark needs a CUDA GPU"
    t0 = time.time()
    res = dict(gpu=torch.cuda.get_device_name(0), torch=torch.__version__,
               resnet50=bench_resnet50(CONFIG['resnet50']), linear_1b=bench_linear_1b(CONFIG['linear_1b']))
    r, l = res['resnet50'], res['linear_1b']
    md = (f"GPU: {res['gpu']}, torch {res['torch']}\n\n"
          f"## ResNet-50 training step, bf16 autocast, channels_last, batch {CONFIG['resnet50']['batch']}\n\n"
          f"| step (ms) | prune with kept values (ms) | apply_masks (ms) | share, recompute every batch | share, masks only |\n|---|---|---|---|---|\n"
          f"| {r['step_ms']:.1f} | {r['prune_ms']:.1f} | {r['apply_masks_ms']:.2f} | {100*r['share_recompute_every_batch']:.1f} % | {100*r['share_apply_only']:.2f} % |\n\n"
          f"## One global prune to 90 % of {l['weights']/1e9:.2f}B Linear weights (fp32)\n\n"
          f"median {l['median_s']:.3f} s (runs: {', '.join(f'{t:.3f}' for t in l['seconds'])}), peak memory above the model "
          f"{l['peak_extra_MB']:.0f} MB, exact count: {l['exact']}\n")
    print(md)
    _common.write_results('gpu_cost', CONFIG, res, md, __file__, time.time() - t0)
