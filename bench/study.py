"""The one-cycle pruning study (Hubens et al. 2021), reproduced on the digits CNN.

The paper prunes ResNet-18 on Imagenette to 95 % (local magnitude, 10 epochs of fit_one_cycle at 1e-3) with eight
schedules. Here the same calls run on `digits_cnn` (scikit-learn's 8x8 digits, offline) at 90 % and 95 %, plus one
harder setting, 5 seeds each, against a dense baseline. Each run: `set_seed(seed)`, then
`digits_learner(digits_cnn(width), seed=seed)` (the seed fixes the initialisation and the train/valid split, so
schedules are compared on the same seeds),
`fit_one_cycle(epochs, lr, cbs=SparsifyCallback(...))`, then the accuracy of the final model (`learn.validate()`)
and its sparsity counted as exact zeros over the pruned layers.
The callback's default mask-update rule is a recompute after every batch of the ramp: `prune_every=None` makes the
same plan as `prune_every=1` (checked here, schedule by schedule), so the study runs it once.

Side by side, at 90 % and 95 %: fasterai 0.4.1's `SparsifyCallback` on the same fits (model, split, seeds, lr, epochs,
`fit_one_cycle`), pruning the same three convs with its own schedule functions over the same window (`FASTERAI`
below). fasterai ranks with `kthvalue` and keeps the k-th weight: it prunes `int(s*n) - 1` weights of a layer of `n`
at fraction `s` where we prune exactly `round(s*n)` (16 of the first conv's 288 weights kept at 95 %, where we keep
14); and it evaluates its schedule before each batch at `round(pct_train, 3)`, which never reaches 1, so a window that
ends with training stops at the schedule's value one batch early (`sched_lin` at 95 %: 94.5 %). So our default runs a
third time at fasterai's final per-layer counts (`layer_sparsity`, the same schedule and window): the like-for-like
comparison. fasterai is a benchmark-only dependency (`pip install --no-deps fasterai==0.4.1 einops`); without it, or
with `--no-fasterai`, the side by side is left out.

    .venv/bin/python bench/study.py            # the study: bench/results/study.json and study.md (~5-10 min, 2 cores)
    .venv/bin/python bench/study.py --pilot    # the pilot that picked the harder setting (prints only)
"""
from __future__ import annotations
import argparse, multiprocessing as mp, sys, time
from pathlib import Path
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results, versions   # noqa: E402

NAME = 'study'

# (label, schedule name, keyword arguments of SparsifyCallback); the paper's accuracy at 95 % on ResNet-18/Imagenette
SCHEDULES = [
    ('one-cycle',               'sched_onecycle', {}),
    ('cos, tail (end 7)',       'sched_cos',      dict(end_epoch=7)),
    ('AGP from 2',              'sched_agp',      dict(start_epoch=2)),
    ('one-shot at 4',           'one_shot',       dict(start_epoch=4)),
    ('iterative from 2 (3 steps)', 'iterative',   dict(start_epoch=2)),
    ('cos',                     'sched_cos',      {}),
    ('lin',                     'sched_lin',      {}),
    ('exp',                     'sched_exp',      dict(start_sparsity=0.0001)),
]
# fasterai 0.4.1's equivalent of each schedule: (fasterai function, start_pct, end_pct); our window [start_epoch,
# end_epoch] of a 10-epoch fit is fasterai's [start_pct, end_pct] of training. fasterai's own sched_onecycle (β=6,
# not normalised: 0.25 % of the target at the start) and sched_agp/sched_oneshot/sched_iterative; fastai's sched_cos
# and sched_lin. `exp` has none: fasterai's progress starts at 0, and sched_exp(0, 1, pos) divides by 0.
FASTERAI = {'one-cycle': ('sched_onecycle', 0., 1.), 'cos, tail (end 7)': ('sched_cos', 0., .7),
            'AGP from 2': ('sched_agp', .2, 1.), 'one-shot at 4': ('sched_oneshot', .4, 1.),
            'iterative from 2 (3 steps)': ('sched_iterative', .2, 1.), 'cos': ('sched_cos', 0., 1.),
            'lin': ('sched_lin', 0., 1.)}
PUBLISHED = {'one-cycle': 79.34, 'cos, tail (end 7)': 77.71, 'AGP from 2': 77.15, 'one-shot at 4': 75.52,
             'iterative from 2 (3 steps)': 66.88, 'cos': 59.18, 'lin': 22.09, 'exp': 9.83}

CONFIG = dict(
    paper=dict(ref='Hubens, Mancas, Gosselin, Preda, Zaharia: One-Cycle Pruning: Pruning ConvNets With Tight '
                   'Training Budget, arXiv:2107.02086 (2021)',
               setup='ResNet-18 on Imagenette, fit_one_cycle(10, 1e-3), 95 % local magnitude sparsity',
               accuracy=PUBLISHED),
    data='scikit-learn digits 8x8, 20 % validation split seeded with the run seed',
    epochs=10, lr=1e-2, bs=64,
    lr_choice='dense digits_cnn(32), fit_one_cycle(10, lr), 2 seeds: 1e-3 98.2 %, 3e-3 99.3 %, 1e-2 99.2 %, '
              '3e-2 99.3 %; 1e-2 (also the demo default) is on the plateau and was kept for all runs',
    granularity='weight', context='local', criteria='large_final',
    schedules=[dict(label=l, schedule=s, **kw) for l, s, kw in SCHEDULES],
    seeds=[0, 1, 2, 3, 4],
    settings=[dict(key='cnn32_90', width=32, sparsity=90),
              dict(key='cnn32_95', width=32, sparsity=95),
              dict(key='cnn32_98', width=32, sparsity=98, harder=True)],
    harder_choice='pilot (--pilot, seeds 0-2): 98 % on digits_cnn(32) separated 23 of the 28 schedule pairs (mean seed '
                  'std 5.1 points), 95 % on digits_cnn(8) 21 of 28 (std 6.3); 98 % on the same CNN was kept: more '
                  'pairs apart, less seed noise, and only the target changes from the main settings',
    hard_candidates=[dict(key='cnn32_98', width=32, sparsity=98), dict(key='cnn8_95', width=8, sparsity=95)],
    pilot_seeds=[0, 1, 2],
    curve_seed=0, curve_every=5,     # one seed's history, every 5th training batch (and the last)
    workers=2, torch_threads=1,
    default_rule='prune_every=None: a mask recompute after every batch of the ramp, the same plan as prune_every=1',
    fasterai=dict(version='0.4.1', settings=['cnn32_90', 'cnn32_95'], granularity='weight', context='local',
                  criteria='large_final', layer_type='Conv2d (the same three convs as ours)',
                  schedules={k: dict(function=f, start_pct=a, end_pct=b) for k, (f, a, b) in FASTERAI.items()},
                  counts='fasterai prunes int(s*n) - 1 weights of an n-weight layer at fraction s (kthvalue, then >= '
                         'keeps the k-th), s its schedule at round(pct_train, 3) of the last training batch; ours also '
                         'runs at those final per-layer counts (layer_sparsity)'),
)

def _schedule(name):
    import fasterprune.schedules as S
    return getattr(S, name)

def pruned_layers(model):
    "The layers the callback prunes by default: Linear and Conv layers except the output layer"
    from torch import nn
    ls = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return dict(ls[:-1])

def fasterai_schedule(label):
    "fasterai 0.4.1's `Schedule` for our schedule `label`"
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()):
        from fastai.callback.schedule import sched_cos, sched_lin
        import fasterai.core.schedule as FS
    f, a, b = CONFIG['fasterai']['schedules'][label].values()
    return FS.Schedule(dict(sched_cos=sched_cos, sched_lin=sched_lin).get(f) or getattr(FS, f), start_pct=a, end_pct=b)

def fasterai_callback(job):
    "fasterai 0.4.1's SparsifyCallback for `job`: its schedule over the same window, on the same three convs"
    import contextlib, io
    from torch import nn
    with contextlib.redirect_stdout(io.StringIO()):
        from fasterai.core.criteria import large_final
        from fasterai.sparse.sparsify_callback import SparsifyCallback as FasteraiSparsify
    return FasteraiSparsify(job['sparsity']/100, CONFIG['fasterai']['granularity'], CONFIG['fasterai']['context'],
                            large_final, fasterai_schedule(job['label']), layer_type=nn.Conv2d)

def fasterai_counts(model, sparsity, label, n_batch):
    "Per-layer sparsity (%) fasterai ends at: int(s*n) - 1 of each layer's n weights, s its value before the last batch"
    n_iter = CONFIG['epochs']*n_batch
    s = sparsity/100*fasterai_schedule(label).progress(round((n_iter - 1)/n_iter, 3))
    return {n: 100*(max(1, int(s*l.weight.numel())) - 1)/l.weight.numel() for n, l in pruned_layers(model).items()}

def run_one(job):
    "Train one configuration; return its accuracy, counted sparsity and (optionally) its curve"
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    from fastai.basics import defaults, set_seed
    from fastai.callback.progress import ProgressCallback
    defaults.cpus = 0   # in-memory data: no DataLoader worker processes (and none may start inside a Pool worker)
    from fasterprune.demo import digits_learner, digits_cnn
    from fasterprune.callback import SparsifyCallback
    t0 = time.perf_counter()
    set_seed(job['seed'], reproducible=True)   # the model is built before digits_learner seeds: seed its init here
    learn = digits_learner(digits_cnn(job['width']), bs=CONFIG['bs'], seed=job['seed'])
    learn.remove_cb(ProgressCallback)
    cb = None
    if job.get('fasterai'): cb = fasterai_callback(job)
    elif job['label'] != 'dense':
        s = job['sched']
        kw = {k: v for k, v in s.items() if k not in ('label', 'schedule')}
        if job.get('fasterai_counts'):
            kw['layer_sparsity'] = fasterai_counts(learn.model, job['sparsity'], job['label'], len(learn.dls.train))
        cb = SparsifyCallback(job['sparsity'], CONFIG['granularity'], CONFIG['context'], CONFIG['criteria'],
                              _schedule(s['schedule']), **kw)
    import contextlib, io
    with learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):   # fasterai prints its progress
        learn.fit_one_cycle(CONFIG['epochs'], CONFIG['lr'], cbs=cb)
    with learn.no_logging(): acc = float(learn.validate()[1])
    layers = pruned_layers(learn.model)
    zeros = sum(int((l.weight == 0).sum()) for l in layers.values())
    numel = sum(l.weight.numel() for l in layers.values())
    res = dict(key=job['key'], label=job['label'], seed=job['seed'], accuracy=100*acc, sparsity=100*zeros/numel,
               time_s=time.perf_counter() - t0)
    if job.get('fasterai'): return dict(res, layer_zeros={n: int((l.weight == 0).sum()) for n, l in layers.items()})
    if cb is not None:
        assert set(cb.sparsifier.layers) == set(layers), 'the callback pruned other layers than counted'
        res['expected'] = 100*sum(round(job['sparsity']/100*l.weight.numel()) for l in layers.values())/numel
        if job.get('fasterai_counts'):
            res['layer_zeros'] = {n: int((l.weight == 0).sum()) for n, l in layers.items()}
            return res
        res['n_prunes'] = cb.n_prunes
        if job.get('curve'):
            h = np.array(cb.history).reshape(-1, 3)
            idx = sorted(set(range(CONFIG['curve_every'] - 1, len(h), CONFIG['curve_every'])) | {len(h) - 1})
            res['curve'] = dict(epoch=[round(float(v), 4) for v in h[idx, 0]],
                                scheduled=[round(float(v), 4) for v in h[idx, 1]],
                                realised=[round(float(v), 4) for v in h[idx, 2]])
    return res

def jobs_for(settings, seeds, curves=True):
    "Every (setting, schedule, seed), plus a dense run per model width and seed"
    jobs = [dict(key=f"dense{w}", width=w, sparsity=0, label='dense', seed=s)
            for w in sorted({st['width'] for st in settings}) for s in seeds]
    for st in settings:
        for sch in CONFIG['schedules']:
            for s in seeds:
                jobs.append(dict(key=st['key'], width=st['width'], sparsity=st['sparsity'], label=sch['label'],
                                 sched=sch, seed=s, curve=curves and s == CONFIG['curve_seed']))
    return jobs

def fasterai_key(key): return f"{key}_fasterai"
def counts_key(key): return f"{key}_fasterai_counts"

def fasterai_jobs(settings, seeds):
    "fasterai's fits, and ours at fasterai's per-layer counts: every compared setting, every schedule it has, every seed"
    sch = {s['label']: s for s in CONFIG['schedules']}
    return [dict(key=k(st['key']), width=st['width'], sparsity=st['sparsity'], label=l, seed=s, sched=sch[l], **{flag: True})
            for k, flag in ((fasterai_key, 'fasterai'), (counts_key, 'fasterai_counts'))
            for st in settings if st['key'] in CONFIG['fasterai']['settings'] for l in CONFIG['fasterai']['schedules']
            for s in seeds]

def default_is_every_batch(n_epoch=CONFIG['epochs'], n_batch=22):
    "Whether `prune_every=None` plans the same mask updates as `prune_every=1`, for every schedule of the study"
    from fasterprune.schedules import SparsitySchedule
    def plan(sch, every):
        kw = {k: v for k, v in sch.items() if k not in ('label', 'schedule')}
        if 'start_sparsity' in kw: kw['start'] = kw.pop('start_sparsity')   # the callback's name of SparsitySchedule's `start`
        return SparsitySchedule(_schedule(sch['schedule']), 95, prune_every=every, **kw).prune_steps(n_epoch, n_batch)[0]
    return all(np.array_equal(plan(sch, None), plan(sch, 1)) for sch in CONFIG['schedules'])

def paired(ours, theirs):
    "Mean and standard error of the per-seed differences `ours - theirs` (the same seeds, in the same order)"
    d = np.array(ours) - np.array(theirs)
    return float(d.mean()), float(d.std(ddof=1)/np.sqrt(len(d))), int((d >= 0).sum())

def compare_fasterai(summary, runs):
    "Per compared setting and schedule: our default, fasterai's, the paired difference; fasterai's sparsity reached"
    out = {}
    for key in CONFIG['fasterai']['settings']:
        rows = []
        for r in summary[key]['schedules']:
            if r['label'] not in CONFIG['fasterai']['schedules']: continue
            get = lambda k: sorted((x for x in runs if x['key'] == k(key) and x['label'] == r['label']), key=lambda x: x['seed'])
            fa, cnt = get(fasterai_key), get(counts_key)
            acc, acc_c = [x['accuracy'] for x in fa], [x['accuracy'] for x in cnt]
            m, se, n_ge = paired(r['accuracy'], acc)
            mc, sec, n_gec = paired(acc_c, acc)
            rows.append(dict(label=r['label'], ours=r['accuracy'], ours_mean=r['mean'], ours_std=r['std'],
                             fasterai=[round(a, 4) for a in acc], fasterai_mean=float(np.mean(acc)),
                             fasterai_std=float(np.std(acc, ddof=1)), diff=m, diff_se=se, seeds_at_or_above=n_ge,
                             fasterai_sparsity=[round(x['sparsity'], 4) for x in fa],
                             same_counts=[round(a, 4) for a in acc_c], same_counts_mean=float(np.mean(acc_c)),
                             same_counts_std=float(np.std(acc_c, ddof=1)), same_counts_diff=mc, same_counts_diff_se=sec,
                             same_counts_seeds_at_or_above=n_gec,
                             same_zeros=all(a['layer_zeros'] == b['layer_zeros'] for a, b in zip(fa, cnt))))
        out[key] = rows
    return out

def fasterai_markdown(cmp, n):
    "The side by side with fasterai"
    fa = CONFIG['fasterai']
    lines = [f"## Side by side: fasterai {fa['version']}", '',
             f"The same fits with fasterai {fa['version']}'s `SparsifyCallback` ({fa['granularity']}, {fa['context']}, "
             f"{fa['criteria']}, layer_type={fa['layer_type']}); each of our schedules maps to fasterai's "
             "`Schedule(function, start_pct, end_pct)` with start_pct = start_epoch/10 and end_pct = end_epoch/10. "
             f"Difference: ours minus fasterai's, per seed (paired), mean ± standard error over {n} seeds.", '',
             '| setting | schedule | fasterai schedule | fasterai | ours (default, exact target) | difference | seeds ours >= | '
             'fasterai sparsity reached | ours at fasterai\'s counts | difference | seeds ours >= | same zeros per layer |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    for key, rows in cmp.items():
        for r in rows:
            f, a, b = fa['schedules'][r['label']].values()
            lines.append(f"| {key} | {r['label']} | {f}, {a:g} to {b:g} | {r['fasterai_mean']:.2f} ± {r['fasterai_std']:.2f} | "
                         f"{r['ours_mean']:.2f} ± {r['ours_std']:.2f} | {r['diff']:+.2f} ± {r['diff_se']:.2f} | "
                         f"{r['seeds_at_or_above']}/{n} | {min(r['fasterai_sparsity']):.3f} % | "
                         f"{r['same_counts_mean']:.2f} ± {r['same_counts_std']:.2f} | "
                         f"{r['same_counts_diff']:+.2f} ± {r['same_counts_diff_se']:.2f} | {r['same_counts_seeds_at_or_above']}/{n} | "
                         f"{'yes' if r['same_zeros'] else 'no'} |")
    return '\n'.join(lines + ['', '"fasterai sparsity reached": zeros counted over the three convs after the fit (lowest '
                               'over the seeds); ours reaches the exact target (tables above).', ''])

def has_fasterai()->bool:
    "Whether fasterai (and this machine's torchvision work-around) can be imported"
    try:
        from _common import declare_torchvision_ops; declare_torchvision_ops()
        import contextlib, io
        with contextlib.redirect_stdout(io.StringIO()): import fasterai.sparse.sparsify_callback  # noqa: F401
        return True
    except ImportError: return False

def run_all(jobs):
    "Run the jobs in `CONFIG['workers']` processes, one torch thread each"
    import torch
    torch.set_num_threads(CONFIG['torch_threads'])
    import fasterprune.callback, fasterprune.demo   # imported once here: every forked worker runs the same code
    if any(j.get('fasterai') for j in jobs): has_fasterai()
    out, t0 = [], time.perf_counter()
    with mp.get_context('fork').Pool(CONFIG['workers']) as pool:
        for i, r in enumerate(pool.imap_unordered(run_one, jobs)):
            out.append(r)
            print(f"[{i+1}/{len(jobs)} {time.perf_counter()-t0:5.0f}s] {r['key']:9s} {r['label']:27s} seed {r['seed']} "
                  f"acc {r['accuracy']:6.2f} sparsity {r['sparsity']:6.2f} ({r['time_s']:.1f}s)", flush=True)
    return out

def _ranks(x):
    "Ranks of `x` (1 = largest), ties averaged"
    x = np.asarray(x, float); order = (-x).argsort(kind='stable'); r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x): r[x == v] = r[x == v].mean()
    return r

def spearman(a, b):
    "Spearman's rank correlation of two sequences"
    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])

def summarise(runs, settings):
    "Per setting: dense baseline and per schedule mean/std accuracy, sparsity reached, curve; rank vs the paper"
    out = {}
    for st in settings:
        dense = [r for r in runs if r['key'] == f"dense{st['width']}"]
        da = np.array([r['accuracy'] for r in dense])
        rows = []
        for sch in CONFIG['schedules']:
            rs = sorted((r for r in runs if r['key'] == st['key'] and r['label'] == sch['label']), key=lambda r: r['seed'])
            acc = np.array([r['accuracy'] for r in rs])
            curve = next((r['curve'] for r in rs if 'curve' in r), None)
            rows.append(dict(label=sch['label'], schedule=sch['schedule'],
                             kwargs={k: v for k, v in sch.items() if k not in ('label', 'schedule')},
                             published=PUBLISHED[sch['label']], accuracy=[round(float(a), 4) for a in acc],
                             mean=float(acc.mean()), std=float(acc.std(ddof=1)), delta_dense=float(acc.mean() - da.mean()),
                             sparsity=[round(r['sparsity'], 4) for r in rs], sparsity_min=min(r['sparsity'] for r in rs),
                             sparsity_max=max(r['sparsity'] for r in rs), expected=rs[0]['expected'],
                             n_prunes=[r['n_prunes'] for r in rs], curve=curve))
        ranks = _ranks([r['mean'] for r in rows])
        for r, k in zip(rows, ranks): r['rank'] = float(k)
        out[st['key']] = dict(setting=st, dense=dict(accuracy=[round(float(a), 4) for a in da], mean=float(da.mean()),
                                                     std=float(da.std(ddof=1)),
                                                     sparsity=max(r['sparsity'] for r in dense)),
                              schedules=rows,
                              spearman_vs_paper=spearman([r['mean'] for r in rows], [r['published'] for r in rows]))
    return out

def markdown(summary):
    "The tables of the study"
    lines = []
    for key, s in summary.items():
        st, d = s['setting'], s['dense']
        lines += [f"## digits_cnn(width={st['width']}) at {st['sparsity']} %" + (' (harder setting)' if st.get('harder') else ''),
                  '', f"Dense baseline: {d['mean']:.2f} ± {d['std']:.2f} % ({len(d['accuracy'])} seeds). "
                  f"Spearman rank correlation with the published ranking: {s['spearman_vs_paper']:+.2f}.", '',
                  '| schedule | published (ResNet-18, 95 %) | accuracy (mean ± std) | vs dense | rank | sparsity reached | exact target | mask updates |',
                  '|---|---:|---:|---:|---:|---:|---:|---:|']
        for r in s['schedules']:
            sp = (f"{r['sparsity_min']:.3f} %" if abs(r['sparsity_max'] - r['sparsity_min']) < 1e-9
                  else f"{r['sparsity_min']:.3f}–{r['sparsity_max']:.3f} %")
            lines.append(f"| {r['label']} | {r['published']:.2f} | {r['mean']:.2f} ± {r['std']:.2f} | "
                         f"{r['delta_dense']:+.2f} | {r['rank']:g} | {sp} | {r['expected']:.3f} % | {int(np.median(r['n_prunes']))} |")
        lines.append('')
    return '\n'.join(lines)

def separated_pairs(rows, n):
    "Pairs of schedules whose mean accuracies differ by more than twice the standard error of the difference"
    k = 0
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows[i], rows[j]
            k += abs(a['mean'] - b['mean']) > 2*np.sqrt((a['std']**2 + b['std']**2)/n)
    return int(k)

def pilot():
    "Run the candidate harder settings on the pilot seeds and print how well each separates the schedules"
    runs = run_all(jobs_for(CONFIG['hard_candidates'], CONFIG['pilot_seeds'], curves=False))
    n = len(CONFIG['pilot_seeds'])
    for key, s in summarise(runs, CONFIG['hard_candidates']).items():
        rows = s['schedules']; top = [r for r in rows if r['published'] > 70]
        print(f"\n{key}: dense {s['dense']['mean']:.2f}; spearman vs paper {s['spearman_vs_paper']:+.2f}; separated pairs: "
              f"{separated_pairs(rows, n)}/{len(rows)*(len(rows)-1)//2} of all, {separated_pairs(top, n)}/"
              f"{len(top)*(len(top)-1)//2} of the published top {len(top)}; mean seed std {np.mean([r['std'] for r in rows]):.2f}")
        for r in rows: print(f"  {r['label']:27s} {r['mean']:6.2f} ± {r['std']:.2f}")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--pilot', action='store_true', help='only run the candidate harder settings on the pilot seeds and print')
    p.add_argument('--out', default=None, help='results folder (default bench/results)')
    p.add_argument('--no-fasterai', action='store_true', help='leave out the side by side with fasterai')
    a = p.parse_args(argv)
    if a.pilot: return pilot()
    t0, src = time.perf_counter(), versions().get('fasterprune_src')
    same = default_is_every_batch()
    assert same, 'prune_every=None no longer plans the updates of prune_every=1: the study assumes it'
    fa = not a.no_fasterai and has_fasterai()
    if not fa: print('fasterai is not installed (or --no-fasterai): no side by side')
    runs = run_all(jobs_for(CONFIG['settings'], CONFIG['seeds']) + (fasterai_jobs(CONFIG['settings'], CONFIG['seeds']) if fa else []))
    changed = versions().get('fasterprune_src') != src
    if changed: print(f'warning: the fasterprune sources changed during the run (they were {src} when it started)')
    summary = summarise(runs, CONFIG['settings'])
    cmp = compare_fasterai(summary, runs) if fa else None
    elapsed = time.perf_counter() - t0
    rule = ("\nMask updates: the default rule (`prune_every=None`) plans the same recomputes as `prune_every=1` for every "
            "schedule here (checked by the script), so its difference from `prune_every=1` is 0.\n\n")
    body = (markdown(summary) + rule + (fasterai_markdown(cmp, len(CONFIG['seeds'])) if fa else '')
            + (f"\n{len(runs)} fits in {elapsed:.0f} s on {CONFIG['workers']} worker processes "
               f"({CONFIG['torch_threads']} torch thread each), fasterprune sources {src}"
               + (' (changed during the run)' if changed else '') + ".\n"))
    path = write_results(NAME, CONFIG, dict(summary=summary, default_is_every_batch=same, fasterai=cmp,
                                            fasterprune_src_used=src, src_changed_during_run=changed,
                                            runs=[{k: v for k, v in r.items() if k != 'curve'} for r in runs]),
                         body, __file__, elapsed,
                         results_dir=a.out)
    print(body); print(f'written {path} and {path.with_suffix(".md")}')

if __name__ == '__main__': main()
