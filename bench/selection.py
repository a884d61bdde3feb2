"""Selection benchmark: time and peak memory of the exact selection and of `Sparsifier.prune` on realistic models,
each against a plain version, and the sparsifier's lean path against its general path.

Models (every Linear/Conv weight selected, `prune_output=True`, scores |w|, target 90%; in 'global' context each
layer keeps its best `min_kept` = 1 weights, the Sparsifier's default, and the references do the same):
- `resnet18`: `fasterprune.demo.resnet18_32()` (ResNet-18-shaped, for 32x32 inputs);
- `transformer`: `nn.TransformerEncoder`, 6 layers, d_model 512, 8 heads, feed-forward 2048 (its Linear layers);
- `linear6`: 6 x nn.Linear(4096, 4096), 100.7M weights (as in bench/bench_scale.py).

Comparisons, each a `compare` group of rows with one `reference` row:
- `exact_keep local`: `exact_keep` once per layer vs per-layer `torch.kthvalue` (reference);
- `exact_keep global`: one `exact_keep` over all layers vs `torch.cat` of all scores + one `kthvalue` (reference);
  the reference cuts the ties at the threshold earliest first, as `exact_keep` does, so both prune the same scores
  (column `exact`: the masks are identical to the reference's);
- `prune local` / `prune global`: `Sparsifier.prune` vs a plain prune (scores, the reference selection above,
  masks copied into `weight_mask`, weights multiplied by them);
- `lean path`: `Sparsifier.prune` in 'local' context on the layers of at most 2^17 weights, with its lean path
  vs with the lean path disabled (`_LEAN_MAX = 0`, reference);
- `sampled pass`: `Sparsifier.prune` in 'local' context with the selection's one pass guided by a sample vs the
  radix histogram alone (`_select_sampled` disabled, reference);
- `numpy compare`: the same, with the selection's comparisons and positions through numpy on CPU vs torch's
  `gt`/`ge`/`nonzero`/`count_nonzero` (reference).
Every comparison has two states: `first` (scores of the fresh weights; for prune, the first call on the model) and
`repeat` (the model pruned once already: 90% of the scores are exact zeros; median of the repeated calls).

Each (model, comparison, method) runs in a fresh subprocess with 1 torch thread. Seconds: median of the calls.
Peak: RSS high-water mark during the call minus RSS before it (/proc/self/status VmHWM and VmRSS, the mark reset
through /proc/self/clear_refs, as in bench_scale.py); where the mark cannot be reset, the growth of
`resource.getrusage(RUSAGE_SELF).ru_maxrss` during the call (a lower bound of the peak).

    .venv/bin/python bench/selection.py [--quick]

Writes bench/results/selection.json and .md (through bench/_common.write_results). `--quick` is a smoke test (small
widths, one or two calls): it writes the same files with `results.quick = True` and a config that is not CONFIG, so
tests/test_bench_results.py reports them as stale until the full run replaces them."""
import argparse, hashlib, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import status_mib, reset_peak_rss

HERE = Path(__file__).resolve().parent
NAME = 'selection'
CONFIG = dict(
    models=['resnet18', 'transformer', 'linear6'], sparsity=90, criterion='large_final', prune_output=True,
    min_kept=1,       # 'global': each layer keeps its best one (the Sparsifier's default); the references honour it
    resnet=dict(width=64),
    transformer=dict(layers=6, d_model=512, nhead=8, dim_feedforward=2048), linear=dict(n=6, width=4096),
    compares=['exact_keep local', 'exact_keep global', 'prune local', 'prune global', 'lean path', 'sampled pass',
              'numpy compare'],
    calls=5,          # timed calls per state (the 'first' state of prune is one call: the first)
    threads=1, seed=0)
QUICK = dict(resnet=dict(width=16), transformer=dict(layers=1, d_model=128, nhead=4, dim_feedforward=256), linear=dict(n=2, width=512), calls=2)
METHODS = {'exact_keep local': ['kthvalue per layer', 'exact_keep per layer'],
           'exact_keep global': ['cat + kthvalue', 'exact_keep'],
           'prune local': ['plain prune', 'Sparsifier.prune'],
           'prune global': ['plain prune', 'Sparsifier.prune'],
           'lean path': ['general path', 'lean path'],
           'sampled pass': ['histogram only', 'sampled pass'],
           'numpy compare': ['torch compare', 'numpy compare']}

def torch_compare(SE):
    "The selection's comparisons and positions with torch's CPU kernels (the reference of 'numpy compare')"
    import torch
    def split(x, lo, hi, o, m1): torch.gt(x, hi, out=o); torch.ge(x, lo, out=m1).logical_xor_(o)
    SE._split, SE._positions, SE._n_true = split, lambda m: m.nonzero().squeeze(1), lambda m: int(torch.count_nonzero(m))

def model(name, cfg):
    "The model, built with a fixed seed"
    import torch
    from torch import nn
    torch.manual_seed(cfg['seed'])
    if name == 'resnet18':
        from fasterprune.demo import resnet18_32
        return resnet18_32(width=cfg['resnet']['width'])
    if name == 'transformer':
        t = cfg['transformer']
        layer = nn.TransformerEncoderLayer(t['d_model'], t['nhead'], t['dim_feedforward'], batch_first=True)
        return nn.TransformerEncoder(layer, t['layers'], enable_nested_tensor=False)
    if name == 'linear6':
        return nn.ModuleList([nn.Linear(cfg['linear']['width'], cfg['linear']['width']) for _ in range(cfg['linear']['n'])])
    raise ValueError(f"unknown model {name!r}")


def _maxrss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux -> MiB

def measure(f):
    "Seconds and peak memory growth (MiB) of one call of `f`"
    reset = reset_peak_rss()
    r0, m0 = status_mib('VmRSS'), _maxrss()
    t0 = time.perf_counter()
    f()
    dt = time.perf_counter() - t0
    peak = status_mib('VmHWM') - r0 if reset else _maxrss() - m0
    return dt, max(peak, 0.)

# ----------------------------------------------------------------------------------------- the plain references
def ref_keep(xs, k, m=0):
    """Keep masks with the k lowest of the flat score tensors `xs` (one pool) pruned, ties earliest first, each tensor
    keeping its best `m` (the latest among equal ones): cat + kthvalue"""
    import torch
    x = torch.cat(xs) if len(xs) > 1 else xs[0].clone() if m else xs[0]
    if m:   # each tensor's best m leave the pool (scores set to inf: |w| scores are finite)
        off = 0
        for xi in xs:
            v = xi.kthvalue(xi.numel() - m + 1).values
            p = xi > v
            ties = (xi == v).nonzero().squeeze(1)
            p[ties[ties.numel() - (m - int(torch.count_nonzero(p))):]] = True
            x[off:off + xi.numel()].masked_fill_(p, float('inf'))
            off += xi.numel()
    if k <= 0: keep = torch.ones(x.numel(), dtype=torch.bool)
    elif k >= x.numel(): keep = torch.zeros(x.numel(), dtype=torch.bool)
    else:
        t = x.kthvalue(k).values
        keep = x > t
        need = k - int(torch.count_nonzero(x < t))       # ties at t to prune, earliest first
        keep[(x == t).nonzero().squeeze(1)[need:]] = True
    return list(keep.split([xi.numel() for xi in xs]))

def ref_local(xs, f): return [ref_keep([x], round(f*x.numel()))[0] for x in xs]
def ref_global(xs, f, m=0): return ref_keep(xs, round(f*sum(x.numel() for x in xs)), m)

def plain_prune(layers, f, ctx, m=0):
    "Scores |w|, the reference selection, masks copied into `weight_mask`, weights multiplied by them"
    import torch
    with torch.no_grad():
        xs = [l.weight.detach().abs().reshape(-1) for l in layers]
        keeps = ref_local(xs, f) if ctx == 'local' else ref_global(xs, f, m)
        for l, k in zip(layers, keeps):
            l.weight_mask.copy_(k.view(l.weight.shape))
            l.weight.mul_(l.weight_mask)

# ------------------------------------------------------------------------------------------------ one case
def child(name, compare, method, cfg):
    "One (model, comparison, method): prints a JSON line with the 'first' and 'repeat' measurements"
    import torch
    torch.set_num_threads(cfg['threads'])
    import fasterprune.sparsifier as S
    from fasterprune.selection import exact_keep
    f = cfg['sparsity'] / 100
    m = model(name, cfg)
    ctx = 'global' if compare.endswith('global') else 'local'
    kw = dict(criteria=cfg['criterion'], prune_output=cfg['prune_output'], min_kept=cfg['min_kept'])
    sp = S.Sparsifier(m, 'weight', ctx, **kw)
    if compare == 'lean path':
        small = [n for n, l in sp.layers.items() if l.weight.numel() <= S._LEAN_MAX]
        if not small: return print(json.dumps(None))
        sp = S.Sparsifier(m, 'weight', 'local', include=small, **kw)
        if method == 'general path': S._LEAN_MAX = 0
    import fasterprune.selection as SE
    if method == 'histogram only': SE._select_sampled = lambda *a: False
    if method == 'torch compare': torch_compare(SE)
    layers = list(sp.layers.values())
    # warm-up on a tiny copy of the situation: the first call of the timed code is not the first call of its kernels
    tiny = [torch.randn(300, generator=torch.Generator().manual_seed(1)).abs() for _ in range(2)]
    exact_keep(tiny, 300); ref_keep(tiny, 300)
    sp.attach()
    first, repeat, masks = [], [], None
    if compare.startswith('exact_keep'):
        def run(xs):
            nonlocal masks
            if compare == 'exact_keep local':
                if method.startswith('exact_keep'): masks = [exact_keep([x], round(f*x.numel()))[0] for x in xs]
                else: masks = ref_local(xs, f)
            elif method == 'exact_keep': masks = exact_keep(xs, round(f*sum(x.numel() for x in xs)), cfg['min_kept'])
            else: masks = ref_global(xs, f, cfg['min_kept'])
        xs = [l.weight.detach().abs().reshape(-1) for l in layers]
        first = [measure(lambda: run(xs)) for _ in range(cfg['calls'])]
        with torch.no_grad():
            for l, k in zip(layers, masks): l.weight.mul_(k.view(l.weight.shape))
        xs = [l.weight.detach().abs().reshape(-1) for l in layers]
        repeat = [measure(lambda: run(xs)) for _ in range(cfg['calls'])]
        masks = [k.reshape(-1) for k in masks]
    else:
        call = (lambda: sp.prune(cfg['sparsity'])) if method != 'plain prune' else (lambda: plain_prune(layers, f, ctx, cfg['min_kept']))
        first = [measure(call)]
        repeat = [measure(call) for _ in range(cfg['calls'])]
        masks = [l.weight_mask.reshape(-1) for l in layers]
    pruned = sum(int((~k).sum()) for k in masks)
    n = [l.weight.numel() for l in layers]
    expected = round(f*sum(n)) if ctx == 'global' and compare != 'lean path' else sum(round(f*x) for x in n)
    h = hashlib.sha256()
    for k in masks: h.update(k.numpy().tobytes())
    print(json.dumps(dict(first=first, repeat=repeat, weights=sum(n), layers=len(n), count_ok=pruned == expected,
                          mask_hash=h.hexdigest()[:16], peak_reset=reset_peak_rss())))

def run_case(name, compare, method, cfg, quick):
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg['threads']), MKL_NUM_THREADS=str(cfg['threads']))
    args = [sys.executable, __file__, '--child', name, compare, method] + (['--quick'] if quick else [])
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if p.returncode: raise RuntimeError(f"{name}/{compare}/{method} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])

def rows_of(name, compare, res):
    "Rows (one per method and state) of one comparison; `exact`: same masks as the reference and the exact count"
    ref = res[METHODS[compare][0]]
    out = []
    for method in METHODS[compare]:
        r = res[method]
        for state in ('first', 'repeat'):
            ts, ps = [t for t, _ in r[state]], [p for _, p in r[state]]
            out.append(dict(model=name, compare=f'{compare}, {state}', method=method,
                            role='reference' if method == METHODS[compare][0] else 'candidate',
                            weights=r['weights'], layers=r['layers'], seconds=statistics.median(ts), seconds_calls=ts,
                            peak_mb=max(ps), exact=bool(r['count_ok'] and r['mask_hash'] == ref['mask_hash']),
                            peak_reset=r['peak_reset']))
    return out

def markdown(rows, cfg, load, quick):
    out = (["**Smoke run (`--quick`): small sizes, few calls; the numbers only show that the script works.**", '']
           if quick else [])
    out += [f"Target {cfg['sparsity']}%, scores |w|, every Linear/Conv weight of the model. Each (model, comparison, "
            f"method) in a fresh subprocess with {cfg['threads']} torch thread(s). Seconds: median of the calls "
            f"({cfg['calls']} per state; the first `prune` is one call). Peak: RSS high-water mark during the call "
            "minus RSS before it. `exact`: the same masks as the reference, with the exact count. `x ref`: time "
            "relative to the reference row of the same comparison.", '',
            "| model | comparison | method | weights | seconds | x ref | peak +MB | exact |", "|---|---|---|---|---|---|---|---|"]
    base = {}
    for r in rows:
        if r['role'] == 'reference': base[(r['model'], r['compare'])] = r['seconds']
        b = base[(r['model'], r['compare'])]
        out.append(f"| {r['model']} | {r['compare']} | {r['method']} | {r['weights']/1e6:.2f}M in {r['layers']} | "
                   f"{r['seconds']:.4f} | {r['seconds']/b if b else float('nan'):.2f} | {r['peak_mb']:.1f} | "
                   f"{'yes' if r['exact'] else 'NO'} |")
    out += ['', f"Load average at the start and end of the run: {load[0]} and {load[1]}; timings grow with it.", '']
    return '\n'.join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--child', nargs=3, metavar=('MODEL', 'COMPARE', 'METHOD'), help=argparse.SUPPRESS)
    ap.add_argument('--quick', action='store_true', help='smoke test: small sizes, few calls (results marked quick)')
    a = ap.parse_args()
    cfg = {**CONFIG, **QUICK} if a.quick else CONFIG
    if a.child: return child(*a.child, cfg)
    import torch
    torch.set_num_threads(cfg['threads'])   # as in the children: `write_results` records it
    sys.path.insert(0, str(HERE))
    from _common import write_results
    t, load0 = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    rows = []
    for name in cfg['models']:
        for compare in cfg['compares']:
            res = {meth: run_case(name, compare, meth, cfg, a.quick) for meth in METHODS[compare]}
            if any(r is None for r in res.values()): continue      # no layer of the model fits the comparison
            rows += rows_of(name, compare, res)
    load1 = [round(x, 2) for x in os.getloadavg()]
    config = dict(cfg, quick=True) if a.quick else cfg
    write_results(NAME, config, dict(rows=rows, quick=a.quick, load_average_start=load0, load_average_end=load1),
                  markdown(rows, cfg, (load0, load1), a.quick), __file__, time.perf_counter() - t)

if __name__ == '__main__': main()
