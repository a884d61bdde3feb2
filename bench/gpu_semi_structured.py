"""2:4 semi-structured sparsity on a CUDA GPU: `to_semi_structured` against the dense model, same weights.

A stack of `depth` Linear(width, width) layers (ReLU between) is pruned '2:4' (fasterprune's Sparsifier, on the CPU
in float32), made permanent, cast to float16 and moved to the GPU; a copy is converted with `to_semi_structured`.
Checks the outputs against the dense model, then times both (torch.cuda.Event, dense and sparse alternately, median
of `runs` after `warmup`), for the whole stack and for one layer. Needs a GPU with compute capability >= 8.0; takes
well under 2 minutes on an H100.

Run: .venv/bin/python bench/gpu_semi_structured.py   (writes bench/results/gpu_semi_structured.md and .json)"""
import copy, statistics, sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from _common import write_results

NAME = 'gpu_semi_structured'
CONFIG = dict(width=4096, depth=4, batches=[2048, 16384], dtype='float16', runs=50, warmup=10, seed=0,
              backends=['cusparselt', 'cutlass'],
              tolerance='max |sparse - dense| <= 1e-2 x max |dense| (float16)')

def build(backend):
    "The pruned dense model on the GPU, and its 2:4 copy"
    from fasterprune.sparsifier import Sparsifier
    from fasterprune.export import make_permanent
    from fasterprune.sparse import to_semi_structured
    torch.manual_seed(CONFIG['seed'])
    w, d = CONFIG['width'], CONFIG['depth']
    dense = nn.Sequential(*[m for _ in range(d) for m in (nn.Linear(w, w), nn.ReLU())][:-1]).eval()
    Sparsifier(dense, '2:4', prune_output=True).prune(50)
    make_permanent(dense)
    dense = dense.to('cuda', getattr(torch, CONFIG['dtype']))
    sparse = copy.deepcopy(dense)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')          # torch's "prototype" warning for SparseSemiStructuredTensor
        to_semi_structured(sparse, backend=backend)
    return dense, sparse

def timed(fns:dict, x)->dict:
    "Median milliseconds of each function on `x`, timed alternately with CUDA events"
    ms = {k: [] for k in fns}
    with torch.no_grad():
        for i in range(CONFIG['warmup'] + CONFIG['runs']):
            for k, f in fns.items():
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(); f(x); b.record(); b.synchronize()
                if i >= CONFIG['warmup']: ms[k].append(a.elapsed_time(b))
    return {k: statistics.median(v) for k, v in ms.items()}

def measure(backend, batch):
    "Outputs and timings of one backend at one batch size"
    dense, sparse = build(backend)
    from torch.sparse import SparseSemiStructuredTensor
    assert all(isinstance(l.weight, SparseSemiStructuredTensor) for l in sparse if isinstance(l, nn.Linear))
    x = torch.randn(batch, CONFIG['width'], device='cuda', dtype=dense[0].weight.dtype)
    with torch.no_grad(): ref, out = dense(x), sparse(x)
    rel = float((out - ref).abs().max() / ref.abs().max())
    try:
        with torch.inference_mode(): sparse(x)
        inference_mode_ok = True
    except RuntimeError as e: inference_mode_ok = f'{type(e).__name__}: {e}'[:200]
    stack = timed({'dense': dense, 'sparse': sparse}, x)
    layer = timed({'dense': dense[0], 'sparse': sparse[0]}, x)
    return dict(backend=backend, batch=batch, weight_type=type(sparse[0].weight).__name__, max_rel_diff=rel,
                outputs_close=rel <= 1e-2, inference_mode_ok=inference_mode_ok, stack_ms=stack,
                stack_speedup=stack['dense']/stack['sparse'], layer_ms=layer, layer_speedup=layer['dense']/layer['sparse'])

def main():
    if not torch.cuda.is_available(): sys.exit('bench/gpu_semi_structured.py needs a CUDA GPU')
    t0 = time.time()
    rows, refused = [], {}
    for be in CONFIG['backends']:
        try: rows += [measure(be, n) for n in CONFIG['batches']]
        except RuntimeError as e: refused[be] = str(e)[:300]     # e.g. CUTLASS's kernels on a GPU they do not support
    res = dict(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
               torch=torch.__version__, cusparselt=torch.backends.cusparselt.is_available(), rows=rows, refused=refused)
    md = (f"## 2:4 semi-structured vs dense, {CONFIG['depth']} x Linear({CONFIG['width']}, {CONFIG['width']}), "
          f"{CONFIG['dtype']}\n\n{res['gpu']} (compute capability {res['capability'][0]}.{res['capability'][1]}), torch "
          f"{res['torch']}, cuSPARSELt available: {res['cusparselt']}.\n\n"
          "| backend | batch | stack dense (ms) | stack 2:4 (ms) | speedup | one layer dense (ms) | one layer 2:4 (ms) | speedup | max rel. diff |\n"
          "|---|---|---|---|---|---|---|---|---|\n" +
          ''.join(f"| {r['backend']} | {r['batch']} | {r['stack_ms']['dense']:.3f} | {r['stack_ms']['sparse']:.3f} | "
                  f"{r['stack_speedup']:.2f}x | {r['layer_ms']['dense']:.3f} | {r['layer_ms']['sparse']:.3f} | "
                  f"{r['layer_speedup']:.2f}x | {r['max_rel_diff']:.1e} |\n" for r in rows) +
          f"\nMedian of {CONFIG['runs']} after {CONFIG['warmup']} warm-up, dense and 2:4 alternately (CUDA events); "
          f"outputs within the tolerance ({CONFIG['tolerance']}): {all(r['outputs_close'] for r in rows)}; "
          f"under torch.inference_mode: {'works' if all(r['inference_mode_ok'] is True for r in rows) else 'fails'}.\n" +
          ''.join(f"\nBackend {k!r} refused by `to_semi_structured` on this GPU: {v}\n" for k, v in refused.items()))
    write_results(NAME, CONFIG, res, md, __file__, time.time() - t0)
    print(md)
    if not all(r['outputs_close'] for r in rows): sys.exit('outputs differ beyond the tolerance')

if __name__ == '__main__': main()
