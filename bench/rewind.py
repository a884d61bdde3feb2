"""Iterative magnitude pruning on digits with and without rewinding (Frankle et al. 2019, 2020), and with random re-initialisation.

For each seed, sparsity and mode: `set_seed(seed)`, `digits_learner(digits_cnn(width), seed=seed)`, then
`learn.fit(epochs, lr)` (Adam, constant rate: each pruning round trains like the first) with
`SparsifyCallback(sparsity, 'weight', 'local', 'large_final', iterative, start_epoch=start_epoch, rewind_epoch=...)`,
where the mode is no rewinding (None), `rewind_epoch` (the weights at the start of that epoch), 0 (the
initialisation: Frankle & Carbin 2019) or
`Rewinder(rewind_epoch, reinit=True)` (a fresh random initialisation, the lottery-ticket control). The accuracy is the
final model's on the seed's validation split (359 images: one image is 0.28 points).

    .venv/bin/python bench/rewind.py        # bench/results/rewind.json and rewind.md (several minutes, 2 cores)
"""
from __future__ import annotations
import multiprocessing as mp, sys, time
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results   # noqa: E402

NAME = 'rewind'
CONFIG = dict(
    data='scikit-learn digits 8x8, 20 % validation split seeded with the run seed',
    model='digits_cnn(32)', epochs=12, lr=1e-3, bs=64, optimizer='Adam (fastai default), learn.fit: constant rate',
    schedule='iterative (3 equal steps)', start_epoch=2, rewind_epoch=1,
    pruning=dict(granularity='weight', context='local', criteria='large_final'),
    sparsities=[80, 90, 95], modes=['no rewind', 'rewind', 'rewind to init', 'random re-init'],
    seeds=[0, 1, 2, 3, 4], workers=2, torch_threads=1,
)

def run_one(job):
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    from fastai.basics import defaults, set_seed
    from fastai.callback.progress import ProgressCallback
    defaults.cpus = 0
    from fasterprune.demo import digits_learner, digits_cnn
    from fasterprune.callback import SparsifyCallback
    from fasterprune.rewind import Rewinder
    from fasterprune.schedules import iterative
    e = CONFIG['rewind_epoch']
    rw = {'no rewind': None, 'rewind': e, 'rewind to init': 0, 'random re-init': Rewinder(e, reinit=True, seed=job['seed'])}[job['mode']]
    set_seed(job['seed'], reproducible=True)
    learn = digits_learner(digits_cnn(32), bs=CONFIG['bs'], seed=job['seed'])
    learn.remove_cb(ProgressCallback)
    p = CONFIG['pruning']
    cb = SparsifyCallback(job['sparsity'], p['granularity'], p['context'], p['criteria'], iterative,
                          start_epoch=CONFIG['start_epoch'], rewind_epoch=rw,
                          prune_every='change')   # every arm: masks at the 3 sparsity steps only (the rule these results were run with)
    t0 = time.perf_counter()
    with learn.no_logging(): learn.fit(CONFIG['epochs'], CONFIG['lr'], cbs=cb)
    with learn.no_logging(): acc = 100*float(learn.validate()[1])
    return dict(job, accuracy=acc, realised=float(cb.realised), n_prunes=cb.n_prunes,
                n_rewinds=cb.rewinder.n_rewinds if cb.rewinder else 0, time_s=time.perf_counter() - t0)

def summarise(runs):
    res = []
    for sp in CONFIG['sparsities']:
        row = dict(sparsity=sp)
        acc = {m: {r['seed']: r['accuracy'] for r in runs if r['sparsity'] == sp and r['mode'] == m} for m in CONFIG['modes']}
        for m in CONFIG['modes']:
            v = list(acc[m].values())
            row[m] = dict(mean=float(np.mean(v)), std=float(np.std(v, ddof=1)))
        for m in ('rewind', 'random re-init'):
            d = np.array([acc[m][s] - acc['no rewind'][s] for s in CONFIG['seeds']])
            row[f'{m} - no rewind'] = dict(mean=float(d.mean()), se=float(d.std(ddof=1)/np.sqrt(len(d))), better=int((d > 0).sum()))
        res.append(row)
    return res

def markdown(rows):
    n = len(CONFIG['seeds'])
    lines = ['| sparsity | no rewind | rewind to epoch 1 | rewind to init | random re-init | rewind - no rewind (paired) | random re-init - no rewind (paired) |',
             '|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        cells = [f"{r[m]['mean']:.2f} ± {r[m]['std']:.2f}" for m in CONFIG['modes']]
        cells += [f"{r[k]['mean']:+.2f} ± {r[k]['se']:.2f} ({r[k]['better']}/{n} seeds better)"
                  for k in ('rewind - no rewind', 'random re-init - no rewind')]
        lines.append(f"| {r['sparsity']} % | " + ' | '.join(cells) + ' |')
    return '\n'.join(lines + ['', f"Accuracy (%) mean ± standard deviation over {n} seeds; the differences are paired by seed (mean ± standard error)."])

def main():
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    import fasterprune.callback, fasterprune.demo, fasterprune.rewind   # noqa: F401  (imported once, before the fork)
    jobs = [dict(sparsity=s, mode=m, seed=sd) for s in CONFIG['sparsities'] for sd in CONFIG['seeds'] for m in CONFIG['modes']]
    t0, runs = time.perf_counter(), []
    with mp.get_context('fork').Pool(CONFIG['workers']) as pool:
        for i, r in enumerate(pool.imap_unordered(run_one, jobs)):
            runs.append(r)
            print(f"[{i+1}/{len(jobs)} {time.perf_counter()-t0:4.0f}s] {r['sparsity']} {r['mode']:15s} seed {r['seed']} "
                  f"acc {r['accuracy']:6.2f} rewinds {r['n_rewinds']}", flush=True)
    elapsed = time.perf_counter() - t0
    rows = summarise(runs)
    body = markdown(rows) + f"\n\n{len(runs)} fits in {elapsed:.0f} s on {CONFIG['workers']} worker processes.\n"
    path = write_results(NAME, CONFIG, dict(summary=rows, runs=runs), body, __file__, elapsed)
    print(body); print(f'written {path}')

if __name__ == '__main__': main()
