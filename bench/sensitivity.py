"""Do per-layer targets from `sensitivity` beat uniform local pruning? The digits CNN at 95 %, 3 seeds.

Per seed: `digits_learner(digits_cnn, seed=seed)` is trained dense with the recipe (`fit_one_cycle(epochs, lr)`), then
`sensitivity` prunes each conv layer alone on its first `n_batches` training batches (the validation set, on which
accuracy is reported, plays no part in choosing the targets) and `sensitivity_targets(df, sparsity)` gives per-layer
targets. Two pruned runs then start from the seed's fresh initialisation with the same recipe:
`SparsifyCallback(sparsity, schedule=sched_onecycle)` (uniform, local) and the same with `layer_sparsity=targets`
(the same number of pruned weights, up to rounding), and a control with the common heuristic "first layer dense,
the others uniform" at the same weight count, to tell what the measurement adds beyond sparing the small first layer.
Accuracy: `learn.validate()` on the seed's validation split;
sparsity: exact zeros over the pruned layers.

    .venv/bin/python bench/sensitivity.py            # bench/results/sensitivity.json and .md (a few minutes, 1 thread)
    .venv/bin/python bench/sensitivity.py --smoke    # one seed, one epoch, prints only
"""
from __future__ import annotations
import sys, time
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results   # noqa: E402

NAME = 'sensitivity'
CONFIG = dict(
    model='digits_cnn(32)', data='scikit-learn digits 8x8, 20 % validation split seeded with the run seed',
    epochs=6, lr=1e-2, bs=64, sparsity=95, schedule='sched_onecycle', granularity='weight', context='local',
    criteria='large_final', control='first layer dense, the other pruned layers uniform, same weight count',
    sensitivity=dict(sparsities=[50, 75, 90, 95, 98, 99], n_batches=4, batches='first training batches', y='loss_increase'),
    seeds=[0, 1, 2], torch_threads=1,
)

def _fit(seed, cb=None, epochs=None):
    "A fresh digits learner for `seed`, trained with the recipe (and `cb`)"
    from fastai.callback.progress import ProgressCallback
    from fasterprune.demo import digits_learner, digits_cnn
    learn = digits_learner(digits_cnn, bs=CONFIG['bs'], seed=seed)
    learn.remove_cb(ProgressCallback)
    with learn.no_logging(): learn.fit_one_cycle(epochs or CONFIG['epochs'], CONFIG['lr'], cbs=cb)
    return learn

def _counted(learn):
    "(accuracy %, zeros, weights) of the layers the callback prunes by default (all conv/linear but the output)"
    from fasterprune.sparsifier import select_layers
    with learn.no_logging(): acc = 100*float(learn.validate()[1])
    ls = select_layers(learn.model)
    return acc, sum(int((l.weight == 0).sum()) for l in ls.values()), sum(l.weight.numel() for l in ls.values())

def run_seed(seed, epochs=None):
    "Dense, uniform and derived runs of one seed"
    from fasterprune.callback import SparsifyCallback
    from fasterprune.schedules import sched_onecycle
    from fasterprune.sensitivity import sensitivity, sensitivity_targets
    C, S = CONFIG, CONFIG['sensitivity']
    dense = _fit(seed, epochs=epochs)
    df = sensitivity(dense, S['sparsities'], C['granularity'], C['criteria'], n_batches=S['n_batches'],
                     batches=dense.dls.train)
    targets = sensitivity_targets(df, C['sparsity'], y=S['y'])
    res = dict(seed=seed, dense=_counted(dense)[0], targets={k: round(v, 4) for k, v in targets.items()},
               sensitivity=df[['unit', 'sparsity', 'loss_increase', 'metric_drop']].round(5).to_dict('list'))
    n = df.attrs['layer_params']; first = next(iter(n)); K = round(C['sparsity']/100*sum(n.values()))
    rest = 100*K/sum(v for k, v in n.items() if k != first)     # the same count with the first layer dense
    heuristic = {k: (0. if k == first else rest) for k in n}
    res['first_dense_targets'] = {k: round(v, 4) for k, v in heuristic.items()}
    for key, kw in (('uniform', {}), ('derived', dict(layer_sparsity=targets)), ('first_dense', dict(layer_sparsity=heuristic))):
        learn = _fit(seed, SparsifyCallback(C['sparsity'], C['granularity'], C['context'], C['criteria'], sched_onecycle, **kw),
                     epochs)
        acc, z, n = _counted(learn)
        res[key] = dict(accuracy=acc, zeros=z, weights=n, sparsity=100*z/n)
    return res

def summarise(runs):
    "Mean ± std (ddof=1) accuracy per variant, and the counted sparsity"
    rows = []
    for key in ('dense', 'uniform', 'derived', 'first_dense'):
        acc = np.array([r[key] if key == 'dense' else r[key]['accuracy'] for r in runs])
        sp = [0. if key == 'dense' else r[key]['sparsity'] for r in runs]
        rows.append(dict(run=key, accuracy=[round(float(a), 3) for a in acc], mean=round(float(acc.mean()), 3),
                         std=round(float(acc.std(ddof=1)), 3) if len(acc) > 1 else None,
                         sparsity=round(float(np.mean(sp)), 4)))
    return rows

if __name__ == '__main__':
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    from fastai.basics import defaults
    defaults.cpus = 0
    smoke = '--smoke' in sys.argv
    t0 = time.perf_counter()
    runs = []
    for seed in (CONFIG['seeds'][:1] if smoke else CONFIG['seeds']):
        runs.append(run_seed(seed, epochs=1 if smoke else None))
        r = runs[-1]
        print(f"seed {seed}: dense {r['dense']:.2f} uniform {r['uniform']['accuracy']:.2f} ({r['uniform']['sparsity']:.3f} %) "
              f"derived {r['derived']['accuracy']:.2f} ({r['derived']['sparsity']:.3f} %) "
              f"first-dense {r['first_dense']['accuracy']:.2f} ({r['first_dense']['sparsity']:.3f} %) targets {r['targets']}", flush=True)
    summary = summarise(runs)
    for s in summary: print(s)
    if not smoke:
        md = ['| run | accuracy (%) mean ± std | per seed | sparsity (%) |', '|---|---|---|---|']
        md += [f"| {s['run']} | {s['mean']:.2f} ± {s['std'] or 0:.2f} | {', '.join(f'{a:.2f}' for a in s['accuracy'])} | "
               f"{s['sparsity']:.3f} |" for s in summary]
        md += ['', 'Targets per seed (%):', ''] + [f"- seed {r['seed']}: {r['targets']}" for r in runs]
        write_results(NAME, CONFIG, dict(summary=summary, runs=runs), '\n'.join(md), __file__, time.perf_counter() - t0)
