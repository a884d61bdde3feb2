"""Knowledge distillation of a pruned digits CNN: `KnowledgeDistillationCallback` against the same pruning fit without it.

For each seed: a dense teacher (`digits_cnn(teacher_width)`, `fit_one_cycle(epochs, lr)`) is trained on that seed's
train/valid split; then the student (`digits_cnn(width)`, built after `set_seed(seed)`, so the same initialisation
with and without distillation) is pruned with `SparsifyCallback(sparsity, 'weight', 'local', 'large_final',
sched_onecycle)` in `fit_one_cycle(epochs, lr)`, once alone and once with
`KnowledgeDistillationCallback(teacher, temperature, weight)`. The accuracy is the final model's on the seed's
validation split (359 images: one image is 0.28 points).

    .venv/bin/python bench/distill.py        # bench/results/distill.json and distill.md (a few minutes, 2 cores)
"""
from __future__ import annotations
import argparse, multiprocessing as mp, sys, time
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results   # noqa: E402

NAME = 'distill'
CONFIG = dict(
    data='scikit-learn digits 8x8, 20 % validation split seeded with the run seed',
    epochs=10, lr=1e-2, bs=64, width=32, teacher_width=32,
    teacher='dense digits_cnn(teacher_width), same seed, split and fit as the students (no pruning)',
    pruning=dict(granularity='weight', context='local', criteria='large_final', schedule='sched_onecycle'),
    sparsities=[95, 98],
    temperature=4., weight=.5,
    seeds=[0, 1, 2, 3, 4],
    workers=2, torch_threads=1,
)

def _fit(learn, cbs):
    from fastai.callback.progress import ProgressCallback
    learn.remove_cb(ProgressCallback)
    with learn.no_logging(): learn.fit_one_cycle(CONFIG['epochs'], CONFIG['lr'], cbs=cbs)
    with learn.no_logging(): return 100*float(learn.validate()[1])

def run_seed(seed):
    "The teacher of `seed`, then every student of that seed: [{sparsity, distilled, seed, accuracy}]"
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    from fastai.basics import defaults, set_seed
    defaults.cpus = 0
    from fasterprune.demo import digits_learner, digits_cnn
    from fasterprune.callback import SparsifyCallback
    from fasterprune.distill import KnowledgeDistillationCallback
    import fasterprune.schedules as S
    t0 = time.perf_counter()
    set_seed(seed, reproducible=True)
    teacher = digits_learner(digits_cnn(CONFIG['teacher_width']), bs=CONFIG['bs'], seed=seed)
    out = [dict(sparsity=0, distilled=False, seed=seed, accuracy=_fit(teacher, None))]
    p = CONFIG['pruning']
    for sp in CONFIG['sparsities']:
        for distilled in (False, True):
            set_seed(seed, reproducible=True)
            learn = digits_learner(digits_cnn(CONFIG['width']), bs=CONFIG['bs'], seed=seed)
            cbs = [SparsifyCallback(sp, p['granularity'], p['context'], p['criteria'], getattr(S, p['schedule']))]
            if distilled: cbs.append(KnowledgeDistillationCallback(teacher.model, CONFIG['temperature'], CONFIG['weight']))
            out.append(dict(sparsity=sp, distilled=distilled, seed=seed, accuracy=_fit(learn, cbs)))
    print(f"seed {seed}: {[round(r['accuracy'], 2) for r in out]} ({time.perf_counter()-t0:.0f} s)", flush=True)
    return out

def summarise(runs):
    "Per sparsity: mean ± std of the plain and the distilled fits, and the paired difference over the seeds"
    teacher = [r['accuracy'] for r in runs if r['sparsity'] == 0]
    res = dict(teacher=dict(mean=float(np.mean(teacher)), std=float(np.std(teacher, ddof=1))), settings=[])
    for sp in CONFIG['sparsities']:
        acc = {d: {r['seed']: r['accuracy'] for r in runs if r['sparsity'] == sp and r['distilled'] == d} for d in (False, True)}
        diff = np.array([acc[True][s] - acc[False][s] for s in CONFIG['seeds']])
        res['settings'].append(dict(sparsity=sp,
            plain=dict(mean=float(np.mean(list(acc[False].values()))), std=float(np.std(list(acc[False].values()), ddof=1))),
            distilled=dict(mean=float(np.mean(list(acc[True].values()))), std=float(np.std(list(acc[True].values()), ddof=1))),
            diff_mean=float(diff.mean()), diff_se=float(diff.std(ddof=1)/np.sqrt(len(diff))), wins=int((diff > 0).sum()),
            ties=int((diff == 0).sum())))
    return res

def markdown(s):
    n = len(CONFIG['seeds'])
    lines = [f"Dense teacher (`digits_cnn({CONFIG['teacher_width']})`): {s['teacher']['mean']:.2f} ± {s['teacher']['std']:.2f} % over {n} seeds.", '',
             f"| sparsity | pruned alone | pruned + distillation (T={CONFIG['temperature']:g}, weight={CONFIG['weight']:g}) | "
             "paired difference ± s.e. | seeds better / tied |", '|---:|---:|---:|---:|---:|']
    for r in s['settings']:
        lines.append(f"| {r['sparsity']} % | {r['plain']['mean']:.2f} ± {r['plain']['std']:.2f} | "
                     f"{r['distilled']['mean']:.2f} ± {r['distilled']['std']:.2f} | {r['diff_mean']:+.2f} ± {r['diff_se']:.2f} | "
                     f"{r['wins']} / {r['ties']} of {n} |")
    return '\n'.join(lines + [''])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=None, help='results folder (default bench/results)')
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    import fasterprune.distill, fasterprune.demo, fasterprune.callback   # noqa: F401  (imported once, before the fork)
    t0 = time.perf_counter()
    with mp.get_context('fork').Pool(CONFIG['workers']) as pool: runs = [r for rs in pool.map(run_seed, CONFIG['seeds']) for r in rs]
    elapsed = time.perf_counter() - t0
    s = summarise(runs)
    body = markdown(s) + f"\n{len(runs)} fits in {elapsed:.0f} s on {CONFIG['workers']} worker processes.\n"
    path = write_results(NAME, CONFIG, dict(summary=s, runs=runs), body, __file__, elapsed, results_dir=a.out)
    print(body); print(f'written {path}')

if __name__ == '__main__': main()
