"""The callback's own time as a share of the training step on the models users prune (issue 15, point 1).

Run: .venv/bin/python bench/hook_share.py   (writes bench/results/hook_share.md and .json)

A fastai Learner on random data (the step's cost does not depend on the values): a ResNet-18-shaped network for
32x32 inputs at batch 64, and a 6-layer transformer encoder (width 512, sequence 128) at batch 32. Each setting is one
epoch of `batches` training batches with `SparsifyCallback(90)`, its events timed one by one (bench/overhead.py's
`TimedSparsify`); the training step is timed from each training batch's first event to its last, less the
callback's time inside it (the validation pass is not part of the step). The settings, one after the other in one process:

- 'every batch': the default (`prune_every=None`, the same as 1) on a one-cycle ramp: a mask recompute after every optimizer step;
- 'masks held': one-shot pruning on the first batch, then masks only kept in force: what a batch costs between
  recomputes.

The fit users run is longer than `batches` batches. 'default, the README fit' applies the measured per-event times to
the README's call (`fit_one_cycle(10)`, `end_epoch=7`) on `samples` samples per epoch: the recomputes the callback's
default rule makes there (`SparsitySchedule.prune_steps`, the plan the callback follows) at the measured time per
recompute, every other batch at the 'masks held' cost, plus the one-time cost of the fit's start and end."""
import sys, time, math, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from torch import nn
from fastai.basics import *
from fasterprune.all import *
from fasterprune.demo import resnet18_32
from overhead import TimedSparsify
import _common

CONFIG = dict(models=dict(resnet18=dict(bs=64, size=32, classes=10), transformer=dict(bs=32, seq=128, d_model=512,
              layers=6, heads=8, ff=2048, classes=10)), batches=8, sparsity=90, schedule='sched_onecycle',
              settings=['every batch', 'masks held'], readme_fit=dict(epochs=10, end_epoch=7, samples=50_000),
              threads=1, seed=0)
ONCE = ('before_fit', 'after_fit', 'after_cancel_fit')   # events of the fit's start and end; the others run per batch

class Encoder(nn.Module):
    "A transformer encoder classifier over `seq` tokens of `d_model` features"
    def __init__(self, c):
        super().__init__()
        layer = nn.TransformerEncoderLayer(c['d_model'], c['heads'], c['ff'], batch_first=True)
        self.enc, self.head = nn.TransformerEncoder(layer, c['layers'], enable_nested_tensor=False), nn.Linear(c['d_model'], c['classes'])
    def forward(self, x): return self.head(self.enc(x).mean(1))

class StepTimer(Callback):
    "Wall time of each training batch, from its first event (before_batch) to after_step"
    order = -1000
    def before_fit(self): self.times = []
    def before_batch(self):
        if self.training: self.t0 = time.perf_counter()
    def after_batch(self):
        if self.training: self.times.append(time.perf_counter() - self.t0)

def learner(name):
    c = CONFIG['models'][name]
    torch.manual_seed(CONFIG['seed'])
    n = c['bs']*(CONFIG['batches'] + 1)
    if name == 'resnet18': x, model = torch.randn(n, 3, c['size'], c['size']), resnet18_32(c['classes'])
    else: x, model = torch.randn(n, c['seq'], c['d_model']), Encoder(c)
    y = torch.randint(0, c['classes'], (n,))
    ds = list(zip(x, y))
    dls = DataLoaders.from_dsets(ds[:c['bs']*CONFIG['batches']], ds[c['bs']*CONFIG['batches']:], bs=c['bs'], num_workers=0,
                                 device=torch.device('cpu'))
    return Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=SGD)

def callback(setting):
    if setting == 'every batch': return TimedSparsify(CONFIG['sparsity'], schedule=sched_onecycle)   # the default
    return TimedSparsify(CONFIG['sparsity'], schedule=one_shot, prune_every='change')   # one prune, then masks only

def run(name, setting):
    "One fit: the callback's time per event, per recompute, and the training steps without it"
    learn, cb, st = learner(name), callback(setting), StepTimer()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=[cb, st])
    rec = cb.__dict__.get('recomputes', [])
    per_batch = sum(v for e, v in cb.spent.items() if e not in ONCE and e != 'metric')
    inside = per_batch - cb.spent['after_batch']       # StepTimer's after_batch runs before the callback's
    step = (sum(st.times) - inside)/len(st.times)
    once = sum(cb.spent[e] for e in ONCE)
    return dict(model=name, setting=setting, n_prunes=cb.n_prunes, recompute_ms=[1000*t for t in rec],
                ms_per_step=1000*step, once_ms=1000*once, metric_ms=1000*cb.spent['metric'],
                ms_per_batch=1000*per_batch/len(st.times),
                share_pct=100*(per_batch + once + cb.spent['metric'])/(step*len(st.times)),
                steady_pct=100*(per_batch - (rec[0] if rec else 0))/max(len(st.times) - (1 if rec else 0), 1)/step)

def readme_fit(name, rows):
    "The default rule on the README's fit, from the measured per-event times of this model"
    c, f = CONFIG['models'][name], CONFIG['readme_fit']
    nb = math.ceil(f['samples']/c['bs'])
    steps, _ = SparsitySchedule(sched_onecycle, CONFIG['sparsity'], end_epoch=f['end_epoch']).prune_steps(f['epochs'], nb)
    r = {x['setting']: x for x in rows if x['model'] == name}
    rec = statistics.median(r['every batch']['recompute_ms'][1:])          # a recompute of a model pruned before
    first = r['every batch']['recompute_ms'][0]                              # the first: buffers are attached
    held = (r['masks held']['ms_per_batch']*CONFIG['batches'] - r['masks held']['recompute_ms'][0])/(CONFIG['batches'] - 1)
    other = r['every batch']['ms_per_batch'] - statistics.mean(r['every batch']['recompute_ms'])   # events around a recompute
    N, n = f['epochs']*nb, len(steps)
    own = first + (n - 1)*(rec + other) + (N - n)*held + r['every batch']['once_ms'] + f['epochs']*r['every batch']['metric_ms']
    step = statistics.mean(x['ms_per_step'] for x in r.values())
    return dict(model=name, batches_per_epoch=nb, batches=N, recomputes=n, ms_per_recompute=rec, ms_held_batch=held,
                ms_per_step=step, share_pct=100*own/(N*step))

if __name__ == '__main__':
    torch.set_num_threads(CONFIG['threads'])
    t0 = time.time()
    rows = [run(m, s) for m in CONFIG['models'] for s in CONFIG['settings']]
    fits = [readme_fit(m, rows) for m in CONFIG['models']]
    md = ("| model | setting | mask recomputes | ms per recompute (median) | ms per step | callback share, this fit | "
          "callback share per batch after the first |\n|---|---|---|---|---|---|---|\n" +
          ''.join(f"| {r['model']} | {r['setting']} | {r['n_prunes']} | "
                  f"{statistics.median(r['recompute_ms']):.1f} | {r['ms_per_step']:.0f} | {r['share_pct']:.2f} % | "
                  f"**{r['steady_pct']:.2f} %** |\n" for r in rows) +
          f"\nOne epoch of {CONFIG['batches']} batches, 1 thread. 'ms per step': a training batch without the callback's "
          "time (no validation). 'this fit': all the callback's time, its start and end included, over the steps of "
          "this short fit; 'per batch after the first': the callback's time on the batches after the first one (the "
          "first attaches the buffers), over their steps: what every batch costs in a long fit.\n\n"
          "**Default settings on the README's fit** (`fit_one_cycle(10)`, `SparsifyCallback(90, ..., sched_onecycle, "
          f"end_epoch=7)`, {CONFIG['readme_fit']['samples']:,} samples per epoch), from the times above:\n\n"
          "| model | batches | mask recomputes (default rule) | ms per recompute | ms per batch, masks held | callback share |\n"
          "|---|---|---|---|---|---|\n" +
          ''.join(f"| {f['model']} | {f['batches']:,} ({f['batches_per_epoch']} per epoch) | {f['recomputes']} | "
                  f"{f['ms_per_recompute']:.1f} | {f['ms_held_batch']:.2f} | **{f['share_pct']:.2f} %** |\n" for f in fits) +
          "\nGoals of issue 15: <= 1 % at the default settings, <= 3 % with a recompute every batch.\n")
    print(md)
    _common.write_results('hook_share', CONFIG, dict(rows=rows, readme_fit=fits), md, __file__, time.time() - t0)
