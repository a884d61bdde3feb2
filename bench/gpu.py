"""Every GPU figure of issue 22 in one run (about 3 minutes on one H200; a global guard stops at CONFIG['time_limit_s']).

1. A ResNet-50 training step (torchvision's, random weights), bf16 autocast, channels_last, batch 128 of 224x224,
   SGD with momentum: the median step, timed with CUDA events.
2. One mask recompute (`Sparsifier.prune`) on that model, 'weight' local, 'weight' global and 'filter' local, mid-ramp:
   a first prune at 50 %, then recomputes at 50.5, 51, ... %, each after a training step (the weights move between two
   recomputes, as in a fit), with and without `keep_pruned_values` (what `SparsifyCallback` runs); median time, share
   of the step (goal <= 10 %), and whether every count is exact.
3. `apply_masks` (what the callback runs after every other step): median time, share of the step (goal <= 1 %); host
   syncs of `apply_masks` and of `prune`, counted under `torch.cuda.set_sync_debug_mode('warn')`, and whether they
   pass under 'error' (the mode is restored to 'default' after).
4. A 'global' prune to 90 % of 1.07B Linear weights (16 layers of 8192x8192, fp32): the first (attaches the masks)
   and repeated ones (the weights moved a little before each), median, peak CUDA memory above the model, exact count
   (goal <= 50 ms).
5. torch.compile: short fastai fits of a compiled ResNet-18-shaped model (`fasterprune.demo.resnet18_32`) with
   `SparsifyCallback(90, 'weight', 'local', schedule=sched_onecycle, prune_every=1)`, the model compiled as a fastai user would:
   `Learner(dls, torch.compile(model))` and `model.compile()` in place. Graphs compiled at each batch (dynamo's
   counters) against the batches whose masks changed: is there a recompilation per mask update?
6. Side by side with fasterai 0.4.1 on one ResNet-50 fit (fastai Learner, synthetic batches already on the GPU, bf16
   through `to_bf16()`, channels_last, torch's SGD): no callback, fasterprune's
   `SparsifyCallback(90, 'weight', 'local', schedule=sched_onecycle)` and fasterai's
   `SparsifyCallback(0.9, 'weight', 'local', large_final, Schedule(sched_onecycle))`, fits alternated, time per
   training batch (the training phase, synchronized at its start and end) and the overhead against the dense fit.

Every section records its error in the results and the run goes on; results are written after each section.

Device command, from the repo root, with the git-ignored folder `.whl/` carried along: it holds the wheels the GPU image
lacks (`pip download --no-deps`): fastai 2.8.12, fastcore 2.2.41, fastdownload 0.0.8, fastprogress 1.1.6, fasttransform
0.0.5, plum-dispatch 2.9.0 (cp312), beartype 0.23.1, torch-pruning 1.6.1 and fasterai 0.4.1; fastprogress's
`fasthtml.common` is stubbed. The image has torch, torchvision, numpy, pandas, matplotlib, einops, tqdm, rich.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
      && mkdir -p /tmp/stub/fasthtml && touch /tmp/stub/fasthtml/__init__.py \
      && echo '__all__=[]' > /tmp/stub/fasthtml/common.py \
      && export PYTHONPATH=/tmp/site:/tmp/stub:$PWD PYTHONUNBUFFERED=1 \
      && python3 bench/gpu.py 2>&1 | tee $OUT/gpu.log; cp bench/results/gpu.md bench/results/gpu.json $OUT/; \
      python3 -m pytest -q tests/test_selection_cuda.py 2>&1 | tail -5 | tee $OUT/cuda_tests.log
It writes bench/results/gpu.md and .json; the CUDA tests (no host sync in the accelerated path, the CPU's masks) follow.

--smoke: tiny sizes and few steps on the CPU (torch.compile with the 'aot_eager' backend), every code path; results
go to a temporary folder (or --results DIR), never to bench/results."""
import argparse, collections, contextlib, copy, io, math, signal, statistics, sys, tempfile, time, traceback, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent)); sys.path.insert(0, str(Path(__file__).parent.parent))
import _common

NAME = 'gpu'
NEEDS_GPU = True   # its results come from one GPU run (tests/test_bench_results.py waits for them)
CONFIG = dict(
    device='cuda', time_limit_s=270,
    resnet50=dict(batch=128, size=224, dtype='bfloat16', channels_last=True, steps=20, warmup=5,
                  optimizer='torch.optim.SGD(lr=1e-3, momentum=0.9, weight_decay=5e-5)'),
    recompute=dict(cases=[['weight', 'local'], ['weight', 'global'], ['filter', 'local']], first=50, move=0.5,
                   repeats=10, warmup=2, goal_share=0.10),
    apply_masks=dict(repeats=30, warmup=5, goal_share=0.01),
    linear_1b=dict(layers=16, width=8192, sparsity=90, context='global', repeats=4, noise=0.01, goal_ms=50),
    compile=dict(model='resnet18_32(n_out=10)', batch=64, size=32, batches=30, backend='inductor',
                 variants=['torch.compile(model)', 'model.compile()'], sparsity=90, granularity='weight',
                 context='local', schedule='sched_onecycle', prune_every=1, min_time_left_s=90),
    fasterai=dict(model='torchvision resnet50(weights=None)', batch=128, size=224, batches=40, rounds=3, warmup_batches=8,
                  distinct_batches=4, sparsity=90, schedule='sched_onecycle', lr=1e-3,
                  ours="SparsifyCallback(90, 'weight', 'local', schedule=sched_onecycle)",
                  theirs="fasterai SparsifyCallback(0.9, 'weight', 'local', large_final, Schedule(sched_onecycle))",
                  min_time_left_s=60),
)
SMOKE = dict(device='cpu', time_limit_s=600,
             resnet50=dict(batch=2, size=64, steps=2, warmup=1), recompute=dict(repeats=2, warmup=1),
             apply_masks=dict(repeats=2, warmup=1), linear_1b=dict(layers=4, width=256, repeats=2),
             compile=dict(batch=8, size=32, batches=6, backend='aot_eager', min_time_left_s=0),
             fasterai=dict(batch=2, size=64, batches=4, rounds=1, warmup_batches=2, distinct_batches=2, min_time_left_s=0))

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------------- helpers

class Deadline(Exception): pass

class Run:
    "The run's config, device, clock and results; `section` runs one part, recording its error and writing the results"
    def __init__(self, cfg, results_dir, smoke):
        self.cfg, self.dir, self.smoke, self.t0, self.res = cfg, results_dir, smoke, time.time(), {}
        self.dev = torch.device(cfg['device'])
        self.cuda = self.dev.type == 'cuda'

    def left(self)->float: return self.cfg['time_limit_s'] - (time.time() - self.t0)

    def section(self, key, f, *args, need_s=0):
        "`f(self, res, *args)` fills `res = self.res[key]` within the time left (at least `need_s`); an error is recorded there"
        t, res = time.time(), self.res.setdefault(key, {})
        if self.left() < need_s: res['skipped'] = f'time guard: {self.left():.0f} s left, this part needs about {need_s} s'
        else:
            try:
                with deadline(self.left()): f(self, res, *args)
            except BaseException as e:   # noqa: a Deadline, a CUDA error, an OOM: recorded next to what was measured
                if isinstance(e, KeyboardInterrupt): raise
                res.update(error=f'{type(e).__name__}: {e}'[:2000], traceback=traceback.format_exc()[-4000:])
        self.res[key]['section_s'] = round(time.time() - t, 1)
        print(f'[{time.time() - self.t0:6.1f} s] {key}: {short(self.res[key])}', flush=True)
        if self.cuda:
            with contextlib.suppress(Exception): torch.cuda.synchronize(); torch.cuda.empty_cache()
        self.write()

    def write(self):
        _common.write_results(NAME, self.cfg, self.res, markdown(self.res, self.cfg), __file__, time.time() - self.t0,
                              results_dir=self.dir)

    def sync(self):
        if self.cuda: torch.cuda.synchronize()

    def ms(self, f)->float:
        "Milliseconds of one call of `f()`, the device drained before it; CUDA events on a GPU"
        self.sync()
        if not self.cuda:
            t = time.perf_counter(); f(); return 1e3*(time.perf_counter() - t)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); b.synchronize()
        return a.elapsed_time(b)

    def times(self, f, n, warmup, before=None)->list:
        "Milliseconds of `f(i)` for i in range(warmup + n), `before(i)` (untimed) ahead of each; the warm-up left out"
        res = []
        for i in range(warmup + n):
            if before is not None: before(i)
            t = self.ms(lambda: f(i))
            if i >= warmup: res.append(t)
        return res

@contextlib.contextmanager
def deadline(seconds):
    "Raise `Deadline` in the main thread after `seconds` (the global time guard of one section)"
    def fire(*_): raise Deadline(f'the run reached its time limit ({seconds:.0f} s left when this part started)')
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1))
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)

def short(r:dict)->str:
    "One line for the log"
    if 'error' in r: return 'ERROR ' + one_line(r['error'])
    if 'skipped' in r: return 'skipped: ' + r['skipped']
    return ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in r.items()
                     if isinstance(v, (int, float, str, bool)))[:400]

def one_line(s, n=400): return ' '.join(str(s).split())[:n]

def med(ts): return statistics.median(ts) if ts else float('nan')

def merged(base:dict, over:dict)->dict:
    "`base` with the values of `over` (nested dicts merged)"
    res = copy.deepcopy(base)
    for k, v in over.items(): res[k] = merged(res[k], v) if isinstance(v, dict) else v
    return res

def sync_check(run, f, mode)->str:
    "How `f()` fares under `torch.cuda.set_sync_debug_mode(mode)`: 'warn' counts the host syncs, 'error' passes or fails"
    if not run.cuda: f(); return 'n/a (no CUDA)'
    run.sync()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode(mode)
        try: f()
        except Exception as e:   # a sync under 'error' is a RuntimeError; anything else is recorded too
            return f"fail: {'' if isinstance(e, RuntimeError) else type(e).__name__ + ': '}{one_line(e, 300)}"
        finally: torch.cuda.set_sync_debug_mode('default')
    if mode == 'error': return 'pass'
    sites = collections.Counter(f'{Path(w.filename).name}:{w.lineno}' for w in ws if 'synchroniz' in str(w.message).lower())
    return f'{sum(sites.values())} syncs' + (' at ' + ', '.join(f'{k} x{v}' for k, v in sites.most_common(6)) if sites else '')

# ------------------------------------------------------------------------------------------------ ResNet-50 (1 to 3)

def resnet50(run):
    "torchvision's ResNet-50 with random weights, on the run's device, channels_last"
    import torchvision
    m = torchvision.models.resnet50(weights=None).to(run.dev)
    return m.to(memory_format=torch.channels_last) if run.cfg['resnet50']['channels_last'] else m

class Trainer:
    "A plain-torch training step of `model` on one fixed batch: bf16 autocast, SGD with momentum"
    def __init__(self, run, model):
        c = run.cfg['resnet50']
        self.run, self.m = run, model
        self.x = torch.randn(c['batch'], 3, c['size'], c['size'], device=run.dev)
        if c['channels_last']: self.x = self.x.to(memory_format=torch.channels_last)
        self.y = torch.randint(0, 1000, (c['batch'],), device=run.dev)
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=.9, weight_decay=5e-5)
        self.dtype = getattr(torch, c['dtype'])

    def step(self, i=None):
        with torch.autocast(self.run.dev.type, dtype=self.dtype):
            loss = nn.functional.cross_entropy(self.m(self.x), self.y)
        loss.backward(); self.opt.step(); self.opt.zero_grad(set_to_none=True)

def step_time(run, res, init):
    "1. The median training step"
    c = run.cfg['resnet50']
    m = resnet50(run); m.load_state_dict(init)
    tr = Trainer(run, m)
    ts = run.times(tr.step, c['steps'], c['warmup'])
    run.step_ms = med(ts)
    res.update(step_ms=run.step_ms, runs_ms=ts, weights=sum(p.numel() for p in m.parameters()))

def exact(sp, s, granularity, context)->bool:
    "Do the masks prune exactly round(s/100*n) structures, per layer (local) or over all layers (global)?"
    pruned, total = [], []
    for l in sp.layers.values():
        m = l.weight_mask.bool()
        if granularity == 'filter': m = m.reshape(m.shape[0], -1).any(1)    # a filter lives while any weight of it does
        pruned.append(int((~m).sum())); total.append(m.numel())
    if context == 'global': return sum(pruned) == round(s/100*sum(total))
    return all(p == round(s/100*n) for p, n in zip(pruned, total))

def recompute_case(run, res, init, granularity, context):
    "2. and 3. for one granularity and context: first prune, recomputes with and without kept values, apply_masks, syncs"
    from fasterprune.sparsifier import Sparsifier
    c, ca = run.cfg['recompute'], run.cfg['apply_masks']
    m = resnet50(run); m.load_state_dict(init)
    tr = Trainer(run, m)
    for i in range(2): tr.step()                                     # cudnn picks its algorithms first
    sp = Sparsifier(m, granularity, context)
    s = [c['first']]
    def prune(keep): s.append(s[-1] + c['move']); sp.prune(s[-1], keep_pruned_values=keep)
    counts = []
    res.update(layers=len(sp.layers), weights=sum(l.weight.numel() for l in sp.layers.values()))
    res['first_ms'] = run.ms(lambda: sp.prune(c['first']))
    counts.append(exact(sp, c['first'], granularity, context))
    for keep, key in ((False, 'recompute'), (True, 'recompute_kept')):
        ts = []
        for i in range(c['warmup'] + c['repeats']):
            tr.step()                                                # as with prune_every=1: a step, then new masks
            t = run.ms(lambda: prune(keep))
            counts.append(exact(sp, s[-1], granularity, context))
            if i >= c['warmup']: ts.append(t)
        res[f'{key}_ms'], res[f'{key}_runs_ms'] = med(ts), ts
    res['sparsity_range'] = [c['first'], s[-1]]
    res['exact'] = all(counts)
    res['apply_masks_runs_ms'] = run.times(lambda i: sp.apply_masks(), ca['repeats'], ca['warmup'], before=tr.step)
    res['apply_masks_ms'] = med(res['apply_masks_runs_ms'])
    step = getattr(run, 'step_ms', None)
    if step:
        for k in ('recompute', 'recompute_kept', 'apply_masks'): res[f'{k}_share'] = res[f'{k}_ms']/step
    # host syncs: counted ('warn'), then 'error' (which may stop `prune` half way: done last, the model is dropped after)
    tr.step()
    res['sync_apply_masks_warn'] = sync_check(run, sp.apply_masks, 'warn')
    res['sync_apply_masks'] = sync_check(run, sp.apply_masks, 'error')
    tr.step()
    res['sync_prune_warn'] = sync_check(run, lambda: prune(False), 'warn')
    res['sync_prune_kept_warn'] = sync_check(run, lambda: prune(True), 'warn')
    res['sync_prune'] = sync_check(run, lambda: prune(False), 'error')
    res['sync_prune_kept'] = sync_check(run, lambda: prune(True), 'error')

# ------------------------------------------------------------------------------------------------- 1.07B global (4)

def linear_1b(run, res):
    "4. A global prune of a stack of Linear layers: first, repeated (weights moved a little before each), memory, count"
    from fasterprune.sparsifier import Sparsifier
    c = run.cfg['linear_1b']
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Linear(c['width'], c['width'], bias=False, device=run.dev) for _ in range(c['layers'])])
    n = sum(p.numel() for p in m.parameters())
    sp = Sparsifier(m, 'weight', c['context'], prune_output=True)
    times, peaks, counts = [], [], []
    res['weights'] = n
    for i in range(1 + c['repeats']):
        if i:
            with torch.no_grad():
                for l in m: l.weight.add_(torch.randn_like(l.weight), alpha=c['noise']*float(l.weight.std()))
        run.sync()
        if run.cuda: torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
        times.append(run.ms(lambda: sp.prune(c['sparsity'])))
        if run.cuda: peaks.append((torch.cuda.max_memory_allocated() - base)/2**20)
        pruned = sum(int((~l.weight_mask).sum()) for l in m)
        counts.append(pruned == round(c['sparsity']/100*n))
        res.update(first_ms=times[0], repeated_runs_ms=times[1:], repeated_ms=med(times[1:]),
                   peak_extra_MiB=max(peaks) if peaks else None, peak_extra_first_MiB=peaks[0] if peaks else None,
                   exact=all(counts), goal_met=max(times[0], med(times[1:]) if i else 0) <= c['goal_ms'])

# ------------------------------------------------------------------------------------------------- fastai fits (5, 6)

def gpu_dls(run, xs, ys, n_batches):
    "fastai DataLoaders over batches already on the device (no collation, no copy): `n_batches` to train, 1 to validate"
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    items = [(xs[i % len(xs)], ys[i % len(ys)]) for i in range(n_batches)]
    return DataLoaders(DataLoader(items, bs=None, shuffle=False, device=run.dev),
                       DataLoader(items[:1], bs=None, shuffle=False, device=run.dev), device=run.dev)

def batches(run, n, bs, size, n_out, channels_last):
    "`n` distinct random batches on the device"
    xs = [torch.randn(bs, 3, size, size, device=run.dev) for _ in range(n)]
    if channels_last: xs = [x.to(memory_format=torch.channels_last) for x in xs]
    return xs, [torch.randint(0, n_out, (bs,), device=run.dev) for _ in range(n)]

def learner(dls, model, cbs=(), lr=1e-3):
    "A fastai Learner with torch's SGD (momentum .9), bf16 mixed precision, no progress bar nor logging"
    from functools import partial
    from fastai.learner import Learner
    from fastai.optimizer import OptimWrapper
    from fastai.losses import CrossEntropyLossFlat
    from fastai.callback.fp16 import MixedPrecision   # noqa: F401 (patches `to_bf16`)
    opt = partial(OptimWrapper, opt=partial(torch.optim.SGD, momentum=.9))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=opt, lr=lr, cbs=list(cbs)).to_bf16()

def quiet_fit(learn, n_epoch=1):
    "`learn.fit` without progress bar, logging or printing (fasterai prints)"
    with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn.fit(n_epoch)

def _timer_cb(run):
    "A callback timing the training phase of a fit (device drained at its start and end)"
    from fastai.callback.core import Callback
    class TrainTimer(Callback):
        order = 100
        def before_train(self): run.sync(); self.t = time.perf_counter()
        def after_train(self): run.sync(); self.s = time.perf_counter() - self.t
    return TrainTimer()

def conv_sparsity(model)->float:
    "% of zero weights over the Conv2d layers"
    ws = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Conv2d)]
    return 100*sum(int((w == 0).sum()) for w in ws)/sum(w.numel() for w in ws)

def side_by_side(run, res):
    "6. The same ResNet-50 fit with no callback, fasterprune's and fasterai's SparsifyCallback, alternated"
    from fasterprune.callback import SparsifyCallback
    from fasterprune.schedules import sched_onecycle
    from fasterai.sparse.sparsify_callback import SparsifyCallback as FaSparsify
    from fasterai.core.schedule import Schedule as FaSchedule, sched_onecycle as fa_onecycle
    from fasterai.core.criteria import large_final as fa_large_final
    c = run.cfg['fasterai']
    torch.manual_seed(0)
    model = resnet50(run)
    init = copy.deepcopy(model.state_dict())
    xs, ys = batches(run, c['distinct_batches'], c['batch'], c['size'], 1000, run.cfg['resnet50']['channels_last'])
    class CountingFa(FaSparsify):
        "fasterai's callback, counting the batches where it recomputes the masks"
        n_updates = 0
        def before_batch(self):
            super().before_batch()
            if self.schedule.changed and self.training: self.n_updates += 1
    kinds = dict(dense=lambda: [],
                 fasterprune=lambda: [SparsifyCallback(c['sparsity'], 'weight', 'local', schedule=sched_onecycle)],
                 fasterai=lambda: [CountingFa(c['sparsity']/100, 'weight', 'local', fa_large_final,
                                              FaSchedule(fa_onecycle))])
    def fit(kind, n):
        model.load_state_dict(init)
        cbs, timer = kinds[kind](), _timer_cb(run)
        learn = learner(gpu_dls(run, xs, ys, n), model, cbs + [timer], lr=c['lr'])
        quiet_fit(learn)
        cb = cbs[0] if cbs else None
        return dict(s=timer.s, sparsity=conv_sparsity(model),
                    updates=None if cb is None else cb.n_prunes if kind == 'fasterprune' else cb.n_updates,
                    layers=None if cb is None else len(cb.sparsifier.layers) if kind == 'fasterprune'
                           else sum(1 for _ in cb.sparsifier._iter_layers()))
    fit('dense', c['warmup_batches'])                                # cudnn, allocator, fastai's first calls
    runs = {k: [] for k in kinds}
    for r in range(c['rounds']):
        for k in kinds:
            if run.left() < 15: res['stopped'] = f'time guard: round {r + 1}, {k} and after not run'; return
            runs[k].append(fit(k, c['batches']))
            summarise(res, runs, c['batches'])

def summarise(res, runs, n):
    "Median ms per training batch of each kind of fit, its overhead over the dense fit, and what the last fit did"
    res.update(batches=n, runs={k: [round(1e3*f['s']/n, 3) for f in v] for k, v in runs.items()})
    for k, v in runs.items():
        if not v: continue
        res[f'{k}_ms_per_batch'] = med([1e3*f['s']/n for f in v])
        res[f'{k}_sparsity'], res[f'{k}_updates'], res[f'{k}_layers'] = v[-1]['sparsity'], v[-1]['updates'], v[-1]['layers']
    d = res.get('dense_ms_per_batch')
    for k in ('fasterprune', 'fasterai'):
        if d and f'{k}_ms_per_batch' in res: res[f'{k}_overhead'] = res[f'{k}_ms_per_batch']/d - 1

def _graphs()->int:
    from torch._dynamo.utils import counters
    return int(counters['stats']['unique_graphs'])

def compile_variant(run, variant):
    "5. One fit of a compiled model with SparsifyCallback(prune_every=1): graphs compiled per batch, mask updates"
    import torch._dynamo
    from torch._dynamo.utils import counters, get_compilation_metrics
    from fastai.callback.core import Callback
    from fasterprune.callback import SparsifyCallback
    from fasterprune.demo import resnet18_32
    from fasterprune import schedules
    c = run.cfg['compile']
    torch._dynamo.reset(); counters.clear()
    torch.manual_seed(0)
    model = resnet18_32(n_out=10).to(run.dev)
    if variant == 'torch.compile(model)': model = torch.compile(model, backend=c['backend'])
    elif variant == 'model.compile()': model.compile(backend=c['backend'])
    else: raise ValueError(f'unknown variant {variant!r}')
    graphs = []
    class GraphCount(Callback):
        "graphs compiled so far, after each training batch"
        order = 100
        def after_batch(self):
            if self.training: graphs.append(_graphs())
    cb = SparsifyCallback(c['sparsity'], c['granularity'], c['context'], schedule=getattr(schedules, c['schedule']),
                          prune_every=c['prune_every'])
    xs, ys = batches(run, 2, c['batch'], c['size'], 10, False)
    learn = learner(gpu_dls(run, xs, ys, c['batches']), model, [cb, GraphCount()])
    t = time.time()
    quiet_fit(learn)
    upd = sorted({round(h[1], 6) for h in cb.history})                # scheduled values seen at each batch
    reasons = [str(getattr(m, 'recompile_reason', None)) for m in get_compilation_metrics()
               if getattr(m, 'recompile_reason', None)]
    after_first = graphs[0] if graphs else 0
    return dict(fit_s=round(time.time() - t, 1), layers=len(cb.sparsifier.layers),
                first_layer=next(iter(cb.sparsifier.layers), None), mask_updates=cb.n_prunes,
                distinct_scheduled_values=len(upd), graphs_after_each_batch=graphs,
                graphs_after_first_batch=after_first, graphs_during_training_after_first=(graphs[-1] - after_first) if graphs else None,
                graphs_total=_graphs(), frames=dict(counters['frames']), recompile_reasons=reasons[:5],
                realised_sparsity=cb.sparsifier.sparsity(),
                recompiles_per_mask_update=((graphs[-1] - after_first)/max(cb.n_prunes - 1, 1)) if graphs else None)

def compiled(run, res):
    "5. Both ways of compiling, the second only while time is left"
    c = run.cfg['compile']
    for v in c['variants']:
        if run.left() < c['min_time_left_s']: res[v] = dict(skipped=f'time guard: {run.left():.0f} s left'); continue
        try: res[v] = compile_variant(run, v)
        except Deadline: raise
        except Exception as e: res[v] = dict(error=f'{type(e).__name__}: {e}'[:2000], traceback=traceback.format_exc()[-4000:])
        print(f'    {v}: {short(res[v])}', flush=True)

# ------------------------------------------------------------------------------------------------------- markdown

def _f(x, fmt='.1f', pct=False):
    if x is None or (isinstance(x, float) and math.isnan(x)): return '—'
    return f'{100*x:{fmt}} %' if pct else f'{x:{fmt}}'

def _missing(r, *keys)->str|None:
    "None if `r` has the figures `keys`, else why not (an error, a skip, not run yet)"
    if r and all(k in r for k in keys): return None
    if 'error' in r: return f"**error**: {one_line(r['error'])}"
    if 'skipped' in r: return f"**skipped**: {r['skipped']}"
    return 'not run'

def md_step(res, cfg):
    r, c = res.get('step', {}), cfg['resnet50']
    head = [f"## 1. ResNet-50 training step (bf16 autocast, channels_last, batch {c['batch']} of {c['size']} px, SGD momentum)", '']
    why = _missing(r, 'step_ms')
    return head + [why or f"median step {r['step_ms']:.2f} ms over {len(r['runs_ms'])} steps ({r['weights']/1e6:.1f}M parameters)"]

def md_recompute(res, cfg):
    c = cfg['recompute']
    out = ['## 2-3. Mask recompute and mask application on that ResNet-50 (goals: recompute <= 10 %, apply_masks <= 1 % '
           'of the step; no host sync)', '',
           f"First prune at {c['first']} %, then recomputes {c['move']} point apart, each after a training step; medians "
           f"of {c['repeats']} (apply_masks: {cfg['apply_masks']['repeats']}).", '',
           '| granularity | context | layers | first prune ms | recompute ms | share | with kept values ms | share | exact counts | apply_masks ms | share |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
    syncs = []
    for g, ctx in c['cases']:
        r = res.get(f'recompute_{g}_{ctx}', {})
        why = _missing(r, 'recompute_ms', 'recompute_kept_ms', 'apply_masks_ms')
        if why: out.append(f"| {g} | {ctx} | {why} |" + ' |'*8); continue
        out.append(f"| {g} | {ctx} | {r['layers']} | {_f(r['first_ms'])} | {_f(r['recompute_ms'])} | {_f(r.get('recompute_share'), pct=True)} | "
                   f"{_f(r['recompute_kept_ms'])} | {_f(r.get('recompute_kept_share'), pct=True)} | {'yes' if r['exact'] else '**NO**'} | "
                   f"{_f(r['apply_masks_ms'], '.3f')} | {_f(r.get('apply_masks_share'), '.2f', pct=True)} |")
        x = lambda k: r.get(k, '—')
        syncs.append(f"| {g} | {ctx} | {x('sync_apply_masks')} ({x('sync_apply_masks_warn')}) | {x('sync_prune')} "
                     f"({x('sync_prune_warn')}) | {x('sync_prune_kept')} ({x('sync_prune_kept_warn')}) |")
    if syncs:
        out += ['', "Host syncs: `torch.cuda.set_sync_debug_mode('error')` (in brackets: the syncs counted under 'warn')", '',
                '| granularity | context | apply_masks | prune | prune, kept values |', '|---|---|---|---|---|', *syncs]
    return out

def md_linear_1b(res, cfg):
    r, c = res.get('linear_1b', {}), cfg['linear_1b']
    out = [f"## 4. Global prune to {c['sparsity']} % of {c['layers']} Linear({c['width']}, {c['width']}) layers, fp32 "
           f"(goal <= {c['goal_ms']} ms)", '']
    if why := _missing(r, 'first_ms'): return out + [why]
    return out + ['| weights | first prune ms | repeated ms (median) | repeated runs ms | peak memory above the model MiB (first, any) | exact counts | goal met |',
                  '|---|---|---|---|---|---|---|',
                  f"| {r['weights']:,} | {_f(r['first_ms'])} | {_f(r['repeated_ms'])} | {', '.join(_f(t) for t in r['repeated_runs_ms'])} | "
                  f"{_f(r['peak_extra_first_MiB'], '.0f')}, {_f(r['peak_extra_MiB'], '.0f')} | {'yes' if r['exact'] else '**NO**'} | "
                  f"{'yes' if r['goal_met'] else 'no'} |",
                  '', 'Before each repeated prune every weight moved by Gaussian noise of '
                  f"{c['noise']} x the layer's standard deviation (as a few training steps would); the masks change."]

def md_compile(res, cfg):
    r, c = res.get('compile', {}), cfg['compile']
    out = [f"## 5. torch.compile ({c['backend']}): a fastai fit of {c['model']}, {c['batches']} batches of {c['batch']}, "
           f"SparsifyCallback({c['sparsity']}, {c['granularity']!r}, {c['context']!r}, schedule={c['schedule']}, prune_every={c['prune_every']})", '']
    if not any(v in r for v in c['variants']): return out + [_missing(r, *c['variants'])]
    out += ['| model compiled as | layers found | mask updates | graphs after batch 1 | new graphs in later training batches | '
            'graphs in all (with validation) | recompile reasons | sparsity reached |', '|---|---|---|---|---|---|---|---|']
    for v in c['variants']:
        x = r.get(v, {})
        if why := _missing(x, 'graphs_total'): out.append(f"| `{v}` | {why} |" + ' |'*6); continue
        reasons = '; '.join(' '.join(s.split())[:150] for s in x['recompile_reasons'][:3]) or '—'
        out.append(f"| `{v}` | {x['layers']} (first: `{x['first_layer']}`) | {x['mask_updates']} | {x['graphs_after_first_batch']} | "
                   f"{x['graphs_during_training_after_first']} | {x['graphs_total']} | {reasons} | {_f(x['realised_sparsity'], '.2f')} % |")
    return out + ['', "A recompilation per mask update shows as about one new graph per later training batch (up to dynamo's "
                  "recompile limit); 0 graphs in all means the model ran uncompiled."]

def md_fasterai(res, cfg):
    r, c = res.get('fasterai', {}), cfg['fasterai']
    out = [f"## 6. Side by side with fasterai 0.4.1: one ResNet-50 fit, {c['batches']} batches of {c['batch']} x {c['size']} px, "
           "bf16 (`to_bf16()`), channels_last", '',
           f"Fits alternated, {c['rounds']} of each; time of the training phase per batch (median over the fits). "
           f"fasterprune: `{c['ours']}`; fasterai: `{c['theirs']}`. On a ramp of at most 100 batches fasterprune's "
           "default rule recomputes the masks at every batch, as fasterai does (column 'mask updates').", '']
    if why := _missing(r, 'runs'): return out + [why + (f" ({r['stopped']})" if 'stopped' in r else '')]
    if 'stopped' in r: out += [f"**{r['stopped']}**", '']
    out += ['| callback | ms per batch | overhead vs dense | mask updates | layers pruned | conv sparsity at the end | runs (ms per batch) |',
            '|---|---|---|---|---|---|---|']
    for k in ('dense', 'fasterprune', 'fasterai'):
        if f'{k}_ms_per_batch' not in r: out.append(f'| {k} | not run (time guard) |' + ' |'*5); continue
        out.append(f"| {k} | {_f(r[f'{k}_ms_per_batch'], '.2f')} | {_f(r.get(f'{k}_overhead'), pct=True)} | {_f(r[f'{k}_updates'], 'd')} | "
                   f"{_f(r[f'{k}_layers'], 'd')} | {_f(r[f'{k}_sparsity'], '.2f')} % | {', '.join(_f(t, '.2f') for t in r['runs'][k])} |")
    return out

def markdown(res, cfg)->str:
    "The results as markdown: one part per figure of issue 22, errors and skipped parts said where they belong"
    env = res.get('env', {})
    out = [f"Device: {env.get('device', '?')}, torch {env.get('torch', '?')}" +
           (' — **smoke run (tiny sizes on the CPU), not a measurement**' if env.get('smoke') else '')]
    for f in (md_step, md_recompute, md_linear_1b, md_compile, md_fasterai):
        try: out += [''] + f(res, cfg)
        except Exception as e: out += ['', f'({f.__name__} could not show its results: {type(e).__name__}: {e})']
    errs = [f"- {k}: {one_line(v['error'])}" for k, v in res.items() if isinstance(v, dict) and 'error' in v]
    errs += [f"- compile, {k}: {one_line(v['error'])}" for k, v in res.get('compile', {}).items()
             if isinstance(v, dict) and 'error' in v]
    if errs: out += ['', '## Errors', '', *errs, '', 'Tracebacks are in the JSON file.']
    return '\n'.join(out) + '\n'

# ----------------------------------------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--smoke', action='store_true', help='tiny sizes on the CPU, results to a temporary folder')
    p.add_argument('--results', default=None, help='folder of the results (default: bench/results; --smoke: a temporary one)')
    a = p.parse_args(argv)
    cfg = merged(CONFIG, SMOKE) if a.smoke else CONFIG
    d = a.results or (tempfile.mkdtemp(prefix='gpu_smoke_') if a.smoke else None)
    if a.smoke:
        torch.set_num_threads(1)
        _common.declare_torchvision_ops()        # this CPU machine's torchvision C extension does not load
    elif not torch.cuda.is_available(): sys.exit('bench/gpu.py needs a CUDA GPU (or --smoke)')
    if cfg['device'] == 'cuda': torch.backends.cudnn.benchmark = True
    run = Run(cfg, d, a.smoke)
    run.res['env'] = dict(device=torch.cuda.get_device_name(0) if run.cuda else 'cpu', torch=torch.__version__, smoke=a.smoke)
    torch.manual_seed(0)
    init = None
    try:
        init = {k: v.detach().clone() for k, v in resnet50(run).state_dict().items()}
    except Exception as e: run.res['resnet50'] = dict(error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc()[-4000:])
    if init is not None:
        run.section('step', step_time, init)
        for g, ctx in cfg['recompute']['cases']:
            run.section(f'recompute_{g}_{ctx}', recompute_case, init, g, ctx, need_s=15)
    del init
    run.section('linear_1b', linear_1b, need_s=20)
    run.section('fasterai', side_by_side, need_s=cfg['fasterai']['min_time_left_s'])
    run.section('compile', compiled, need_s=cfg['compile']['min_time_left_s'])
    run.write()
    print(markdown(run.res, cfg))
    print(f"results: {Path(run.dir or _common.RESULTS)/(NAME + '.md')} ({time.time() - run.t0:.0f} s)")

if __name__ == '__main__': main()
