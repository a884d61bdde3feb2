"""A physically smaller, faster model: `compact` after structured pruning, sparse layouts, sparse checkpoints.

Run: .venv/bin/python bench/speedup.py [--quick]   (writes bench/results/speedup.md and .json)

Latencies: 1 torch thread, eval mode, inference_mode; after warm-up, the dense and the pruned model are timed
alternately in the same loop (median of `runs` calls each), so both see the same machine state."""
import sys, time, statistics, warnings, io
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from torch import nn
from fasterprune.all import *
from fasterprune.demo import digits_learner, digits_cnn, resnet18_32
import _common

QUICK = '--quick' in sys.argv
CONFIG = dict(threads=1, runs=20, warmup=3, sparsities=[30, 50, 70], batches=[1, 64],
              resnet='resnet18_32() (11.2M params), 32x32 inputs, one-shot large_final pruning, untrained',
              digits='digits_cnn(), fit_one_cycle(8, 1e-2) with SparsifyCallback(s, g, schedule=sched_agp, end_epoch=5)',
              granularities=['filter', 'coupled'], digits_epochs=8, seed=0)

def speeds(dense, small, x, batches, runs, warmup)->dict:
    "ms per batch of the dense and the compacted model, and the speed-up, at each batch size (timed alternately)"
    row = {}
    for b in batches:
        t = _common.latency({'dense': dense, 'compact': small}, x[:b], runs, warmup)
        row[f'ms_b{b}'], row[f'ms_compact_b{b}'], row[f'speedup_b{b}'] = 1e3*t['dense'], 1e3*t['compact'], t['dense']/t['compact']
    return row

def size_and_macs(model, x):
    import torch_pruning as tp
    macs, params = tp.utils.count_ops_and_params(model, x[:1])
    return int(params), int(macs)

def file_bytes(model):
    buf = io.BytesIO(); torch.save(model.state_dict(), buf); return buf.tell()

def bench_resnet(runs, warmup, sparsities, batches):
    "ResNet-18-shaped network: params, MACs and latency before and after `compact`, per granularity and sparsity"
    rows = []
    for g in CONFIG['granularities']:
        for s in sparsities:
            torch.manual_seed(CONFIG['seed'])
            dense = resnet18_32().eval()
            x = torch.randn(max(batches), 3, 32, 32)
            model = resnet18_32().eval(); model.load_state_dict(dense.state_dict())
            sp = Sparsifier(model, g, example_inputs=x[:2] if g == 'coupled' else None); sp.prune(s); sp.detach()
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                small = compact(model, x[:2]).eval()
            with torch.no_grad(): diff = float((model(x[:8]) - small(x[:8])).abs().max())
            (p0, m0), (p1, m1) = size_and_macs(dense, x), size_and_macs(small, x)
            rows.append(dict(granularity=g, sparsity=s, params=p0, params_compact=p1, macs=m0, macs_compact=m1,
                             max_diff=diff, **speeds(dense, small, x, batches, runs, warmup)))
    return rows

def bench_digits(runs, warmup, sparsities, batches, epochs):
    "Digits CNN trained with 'filter' pruning: accuracy of the masked and the compacted model, size, latency"
    rows = []
    for s in sparsities:
        learn = digits_learner(seed=CONFIG['seed'])
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, 1e-2, cbs=SparsifyCallback(s, 'filter', schedule=sched_agp, end_epoch=epochs*5//8))
            acc = float(learn.validate()[1])
            masked = learn.model.eval()
            x = learn.dls.valid.one_batch()[0]
            small = compact(masked, x).eval()
            learn.model = small
            acc_c = float(learn.validate()[1])
        dense = digits_cnn().eval()
        xb = torch.cat([x] * (max(batches)//len(x) + 1))[:max(batches)]
        (p0, m0), (p1, m1) = size_and_macs(dense, xb), size_and_macs(small, xb)
        rows.append(dict(sparsity=s, accuracy=acc, accuracy_compact=acc_c, params=p0, params_compact=p1, macs=m0,
                         macs_compact=m1, bytes=file_bytes(dense), bytes_compact=file_bytes(small),
                         **speeds(dense, small, xb, batches, runs, warmup)))
    return rows

def _table(rows, cols):
    head = '| ' + ' | '.join(cols) + ' |\n|' + '---|'*len(cols) + '\n'
    fmt = lambda v: f'{v:,.3g}' if isinstance(v, float) else f'{v:,}' if isinstance(v, int) else str(v)
    return head + ''.join('| ' + ' | '.join(fmt(r[c]) for c in cols) + ' |\n' for r in rows)

def md_compact(res):
    b = CONFIG['batches']
    lat = [c for x in b for c in (f'ms_b{x}', f'ms_compact_b{x}', f'speedup_b{x}')]
    return ('## ResNet-18-shaped network (32x32), `compact` after one-shot pruning\n\n' +
            _table(res['resnet'], ['granularity', 'sparsity', 'params', 'params_compact', 'macs', 'macs_compact', 'max_diff'] + lat) +
            '\n## Digits CNN trained with `\'filter\'` pruning, then `compact`\n\n' +
            _table(res['digits'], ['sparsity', 'accuracy', 'accuracy_compact', 'params', 'params_compact', 'bytes',
                                   'bytes_compact'] + lat))

# ------------------------------------------------------------------------- sparse layouts and sparse checkpoints
from fasterprune.sparse import save_sparse, load_sparse, to_sparse_linear, DEFAULT_MIN_SPARSITY
import os, tempfile
CONFIG.update(
    sparse_mlp=dict(model='width x width nn.Linear, depth layers with ReLU between, all pruned (prune_output=True), '
                          "'weight' granularity, local, large_final, make_permanent; untrained (seeded) weights",
                    width=4096, depth=3, sparsities=[70, 80, 85, 90, 95, 98], batches=[1, 64], blocksizes=[2, 4, 8, 16]),
    checkpoints=dict(model='the sparse_mlp model', width=4096, depth=3, sparsities=[50, 70, 90, 95]))
QUICK_SPARSE = dict(width=256, depth=2, sparsities=[90, 95], batches=[1, 8], blocksizes=[4])
QUICK_CKPT = dict(width=256, depth=2, sparsities=[50, 95])

def mlp(width, depth, seed=0):
    "`depth` width x width Linear layers with ReLU between, in eval mode"
    torch.manual_seed(seed)
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())][:-1]).eval()

def pruned_mlp(width, depth, sparsity, seed=0):
    "`mlp` with every layer pruned to `sparsity` % (unstructured, local, large_final), masks removed"
    model = mlp(width, depth, seed)
    Sparsifier(model, prune_output=True).prune(sparsity)
    return make_permanent(model)

def _crossover(rows, batches, col):
    "Lowest measured sparsity from which `col` beats dense at every batch size, at it and every higher one (None: never)"
    res = None
    for r in sorted(rows, key=lambda r: -r['sparsity']):
        if all(r[f'ms_{col}_b{b}'] < r[f'ms_dense_b{b}'] for b in batches): res = r['sparsity']
        else: break
    return res

def bench_sparse_mlp(quick=False):
    "Dense vs CSR vs BSR `SparseLinear` latency of a large pruned MLP (CPU, 1 thread), and the crossover sparsity"
    c = {**CONFIG['sparse_mlp'], **(QUICK_SPARSE if quick else {})}
    runs, warmup = (3, 1) if quick else (CONFIG['runs'], CONFIG['warmup'])
    rows = []
    for s in c['sparsities']:
        dense = pruned_mlp(c['width'], c['depth'], s, CONFIG['seed'])
        models = {'dense': dense, 'csr': to_sparse_linear(dense, 'csr', min_sparsity=0)}
        for bs in c['blocksizes']: models[f'bsr{bs}'] = to_sparse_linear(dense, 'bsr', min_sparsity=0, blocksize=bs)
        x = torch.randn(max(c['batches']), c['width'])
        row = dict(sparsity=s)
        with torch.inference_mode():
            ref = dense(x)
            row['max_rel_diff'] = max(float((m(x) - ref).abs().max()/ref.abs().max()) for m in models.values())
        for b in c['batches']:
            t = _common.latency(models, x[:b], runs, warmup)
            for k, v in t.items(): row[f'ms_{k}_b{b}'] = 1e3*v
            for k in models:
                if k != 'dense': row[f'speedup_{k}_b{b}'] = t['dense']/t[k]
        rows.append(row)
    cross = {lay: {b: _crossover(rows, [b], lay) for b in c['batches']} | {'all': _crossover(rows, c['batches'], lay)}
             for lay in ['csr'] + [f'bsr{bs}' for bs in c['blocksizes']]}
    res = dict(rows=rows, crossover=cross, default_min_sparsity_now=DEFAULT_MIN_SPARSITY)
    lay = ['csr'] + [f'bsr{bs}' for bs in c['blocksizes']]
    md = (f"## Sparse layouts: {c['depth']} x Linear({c['width']}, {c['width']}), unstructured, CPU\n\n"
          f"Milliseconds per forward pass (median of {runs} after {warmup} warm-up, dense and sparse models timed "
          "alternately); `speedup_*` = dense / sparse. `csr` and `bsr<b>` are `to_sparse_linear(model, layout, "
          "min_sparsity=0, blocksize=b)`.\n\n")
    for b in c['batches']:
        md += f"### batch {b}\n\n" + _table(rows, ['sparsity', f'ms_dense_b{b}'] + [f'ms_{k}_b{b}' for k in lay] +
                                             [f'speedup_{k}_b{b}' for k in lay]) + '\n'
    md += ("Crossover (lowest measured sparsity from which the layout is faster than dense, there and above): " +
           '; '.join(f"{k}: " + ', '.join(f"batch {b} {v if v is not None else 'never'}" for b, v in d.items() if b != 'all')
                     for k, d in cross.items()) +
           f".\n\n**Suggested `DEFAULT_MIN_SPARSITY`** (CSR faster at every measured batch size): "
           f"{cross['csr']['all']} (fasterprune.sparse has {DEFAULT_MIN_SPARSITY} now). Largest relative output "
           f"difference to the dense model: {max(r['max_rel_diff'] for r in rows):.1e}.\n")
    return res, md

def bench_checkpoints(quick=False):
    "File sizes of torch.save vs save_sparse for the pruned MLP at several sparsities, with save/load times"
    c = {**CONFIG['checkpoints'], **(QUICK_CKPT if quick else {})}
    rows, tmp = [], Path(tempfile.mkdtemp())
    for s in c['sparsities']:
        m = pruned_mlp(c['width'], c['depth'], s, CONFIG['seed'])
        t = time.perf_counter(); torch.save(m.state_dict(), tmp/'d.pt'); t_save = time.perf_counter() - t
        t = time.perf_counter(); torch.load(tmp/'d.pt'); t_load = time.perf_counter() - t
        t = time.perf_counter(); save_sparse(m, tmp/'s.safetensors'); t_ssave = time.perf_counter() - t
        fresh = mlp(c['width'], c['depth'], CONFIG['seed'] + 1)
        t = time.perf_counter(); load_sparse(fresh, tmp/'s.safetensors'); t_sload = time.perf_counter() - t
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), fresh.state_dict().values()))
        d, sp = [os.path.getsize(tmp/f) for f in ('d.pt', 's.safetensors')]
        w = sum(l.weight.numel() for l in m if isinstance(l, nn.Linear))
        rows.append(dict(sparsity=s, torch_save_bytes=d, save_sparse_bytes=sp, ratio_pct=100*sp/d,
                         expected_pct=100*(1/32 + (1 - s/100))*4*w/d + 100*(d - 4*w)/d,
                         s_torch_save=t_save, s_torch_load=t_load,
                         s_save_sparse=t_ssave, s_load_sparse=t_sload))
        for f in ('d.pt', 's.safetensors'): os.remove(tmp/f)
    os.rmdir(tmp)
    md = (f"## Checkpoints: {c['depth']} x Linear({c['width']}, {c['width']}), all pruned (unstructured)\n\n" +
          _table(rows, ['sparsity', 'torch_save_bytes', 'save_sparse_bytes', 'ratio_pct', 'expected_pct',
                        's_torch_save', 's_torch_load', 's_save_sparse', 's_load_sparse']) +
          "\n`ratio_pct` = save_sparse / torch.save (goal at 95 %: <= 10 %); `expected_pct`: a bit per weight plus the "
          "kept float32 values, biases dense; the loaded weights are checked bit-identical. Times: one call each, in "
          "seconds, informative.\n")
    return dict(rows=rows), md


if __name__ == '__main__':
    torch.set_num_threads(CONFIG['threads'])
    t0 = time.time()
    runs, warmup = (3, 1) if QUICK else (CONFIG['runs'], CONFIG['warmup'])
    sps = [50] if QUICK else CONFIG['sparsities']
    res = dict(resnet=bench_resnet(runs, warmup, sps, CONFIG['batches']),
               digits=bench_digits(runs, warmup, sps, CONFIG['batches'], 2 if QUICK else CONFIG['digits_epochs']))
    body = md_compact(res)
    for name in ('bench_sparse_mlp', 'bench_checkpoints'):     # the sparse-layout and checkpoint sections
        if name in globals(): r, md = globals()[name](QUICK); res[name] = r; body += '\n' + md
    if QUICK: print(body)
    else: _common.write_results('speedup', CONFIG, res, body, __file__, time.time() - t0)
