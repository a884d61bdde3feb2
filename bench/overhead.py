"""The callback's own time as a share of a dense fit, measured by timing its events (not by comparing two noisy fits).

Run: .venv/bin/python bench/overhead.py   (writes bench/results/overhead.md and .json)"""
import sys, time, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import torch
from fastai.basics import *
from fastai.callback.schedule import *
from fasterprune.all import *
from fasterprune.demo import digits_learner, digits_cnn
import _common

CONFIG = dict(model='digits_cnn(width=32)', epochs=10, lr=1e-2, bs=64, sparsity=95, granularity='weight', context='local',
              criteria='large_final', schedule='sched_onecycle', repeats=3, threads=1, isolated_drift=0.02,
              reference='fasterai 0.4.1 on this machine: 6.4-8.3 % of the fit, 2.2 ms per recompute, 220 recomputes per fit')
from fastai.callback.core import _events
EVENTS = tuple(e for e in _events if e in vars(SparsifyCallback))   # every event the callback handles

class TimedSparsify(SparsifyCallback):
    "SparsifyCallback whose events are timed with perf_counter"
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spent, self.prune_time = {e: 0. for e in EVENTS + ('metric',)}, 0.
    def _time_prunes(self, run):
        "Time each mask recompute of this fit's `PruneRun` (into `prune_time` and the list `recomputes`)"
        prune = run.prune
        def timed(value, i):
            t = time.perf_counter(); prune(value, i); dt = time.perf_counter() - t
            self.__dict__['prune_time'] += dt; self.__dict__.setdefault('recomputes', []).append(dt)
        run.prune = timed
    def _realised(self):   # the fit table's sparsity column, computed by the recorder at each epoch's end: ours too
        t = time.perf_counter(); r = super()._realised(); self.spent['metric'] += time.perf_counter() - t
        return r

def _timed(name):
    def f(self):
        t = time.perf_counter(); getattr(SparsifyCallback, name)(self); self.spent[name] += time.perf_counter() - t
        run = self.__dict__.get('fit_run')
        if run is not None and 'prune' not in vars(run): self._time_prunes(run)   # the fit's run exists: time its recomputes
    return f
for _e in EVENTS: setattr(TimedSparsify, _e, _timed(_e))

def one_run(seed):
    learn = digits_learner(seed=seed, bs=CONFIG['bs'])
    cb = TimedSparsify(CONFIG['sparsity'], CONFIG['granularity'], CONFIG['context'], large_final, sched_onecycle)
    t = time.perf_counter()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(CONFIG['epochs'], CONFIG['lr'], cbs=cb)
    total = time.perf_counter() - t
    own = sum(cb.spent.values())
    return dict(fit_s=total, callback_s=own, share_pct=100*own/(total - own), n_prunes=cb.n_prunes,
                ms_per_prune=1000*cb.prune_time/max(cb.n_prunes, 1), ms_per_batch=1000*own/len(cb.history), n_batches=len(cb.history),
                by_event_ms={k: 1000*v for k, v in cb.spent.items()})

def isolated(seed, n_steps=220):
    """Median ms of one `Sparsifier.prune` alone (no training around it): the digits CNN's weights drift by
    `isolated_drift` of their std between calls (not timed), the target follows the fit's one-cycle ramp"""
    torch.manual_seed(seed)
    sp = Sparsifier(digits_cnn(), CONFIG['granularity'], CONFIG['context'], large_final)
    ws, times = [l.weight for l in sp.layers.values()], []
    for i in range(n_steps):
        with torch.no_grad():
            for w in ws: w.add_(torch.randn_like(w)*w.std()*CONFIG['isolated_drift'])
        t = time.perf_counter()
        sp.prune(sched_onecycle(0, CONFIG['sparsity'], (i+1)/n_steps), keep_pruned_values=True, final=CONFIG['sparsity'])
        times.append(time.perf_counter() - t)
    return 1000*statistics.median(times)

def main():
    t0 = time.perf_counter()
    torch.set_num_threads(CONFIG['threads'])
    one_run(0)                                   # warm-up
    runs = [one_run(s) for s in range(CONFIG['repeats'])]
    med = lambda k: statistics.median(r[k] for r in runs)
    res = dict(share_pct=med('share_pct'), share_pct_max=max(r['share_pct'] for r in runs), fit_s=med('fit_s'),
               callback_s=med('callback_s'), ms_per_prune=med('ms_per_prune'), ms_per_batch=med('ms_per_batch'),
               n_prunes=runs[0]['n_prunes'], n_batches=runs[0]['n_batches'], isolated_ms_per_prune=statistics.median(isolated(s) for s in range(CONFIG['repeats'])), runs=runs)
    md = [f"| fit (s) | callback (s) | callback share of the dense fit | mask recomputes | ms per recompute | ms per batch (all events) |",
          "|---|---|---|---|---|---|",
          f"| {res['fit_s']:.2f} | {res['callback_s']:.3f} | **{res['share_pct']:.2f} %** (max {res['share_pct_max']:.2f} %) | "
          f"{res['n_prunes']} | {res['ms_per_prune']:.3f} | {res['ms_per_batch']:.3f} |",
          "", f"Median of {CONFIG['repeats']} fits after a warm-up; {CONFIG['threads']} thread. "
          f"Reference: {CONFIG['reference']}.", "",
          f"The same recompute alone (`Sparsifier.prune` on the digits CNN, weights drifting by {CONFIG['isolated_drift']} of "
          f"their std between calls, no training around it): **{res['isolated_ms_per_prune']:.3f} ms** (median of 220 calls, "
          f"median over {CONFIG['repeats']} seeds). 1 % of the dense fit is {10*(res['fit_s'] - res['callback_s'])/res['n_prunes']:.3f} ms per "
          f"recompute ({10*(res['fit_s'] - res['callback_s'])/res['n_batches']:.3f} ms per batch)."]
    _common.write_results('overhead', CONFIG, res, '\n'.join(md), __file__, elapsed_s=time.perf_counter() - t0)

if __name__ == '__main__': main()
