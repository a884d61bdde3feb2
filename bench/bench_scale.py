"""Scale benchmark: time and peak memory of one `Sparsifier.prune(90)` call ('weight' granularity, large_final).

Cases: ResNet-50's conv/linear weight shapes (built by hand as plain nn.Conv2d/nn.Linear in an nn.ModuleList, no
torchvision) and 6 x nn.Linear(4096, 4096), each in 'global' and 'local' context, every layer selected
(prune_output=True). Each run is a fresh subprocess with 1 thread; the masks are attached before the timed call (their
cost, 1 byte per weight, is reported apart). Seconds: median of the runs. Memory: peak RSS increase during the call,
VmHWM after it minus VmRSS before it, the peak being reset first through /proc/self/clear_refs.

    .venv/bin/python bench/bench_scale.py

Writes bench/results/scale.md and bench/results/scale.json (through bench/_common.write_results)."""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import status_mib, reset_peak_rss

HERE = Path(__file__).resolve().parent
NAME = 'scale'
CONFIG = dict(
    cases=[['resnet50', 'global'], ['resnet50', 'local'], ['linear6', 'global'], ['linear6', 'local']],
    sparsity=90, granularity='weight', criterion='large_final', prune_output=True, runs=3, threads=1, seed=0,
    # fasterai 0.4.1 on this kind of machine, from the issue: [seconds, peak RSS +MB] (None: not measured)
    reference={'resnet50/global': [0.63, 373], 'resnet50/local': [None, None],
               'linear6/global': [3.76, 1605], 'linear6/local': [2.66, 596]},
    goals={'resnet50/global': [0.2, None], 'linear6/global': [1.0, 500]})

def resnet50_shapes():
    "The weights of ResNet-50 (conv1, 16 bottlenecks with their downsamples, fc) as plain layers"
    from torch import nn
    layers, inp = [nn.Conv2d(3, 64, 7, bias=False)], 64
    for width, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        out = width*4
        for b in range(blocks):
            layers += [nn.Conv2d(inp, width, 1, bias=False), nn.Conv2d(width, width, 3, bias=False),
                       nn.Conv2d(width, out, 1, bias=False)]
            if b == 0: layers.append(nn.Conv2d(inp, out, 1, bias=False))
            inp = out
    layers.append(nn.Linear(2048, 1000))
    return nn.ModuleList(layers)

def linear6():
    from torch import nn
    return nn.ModuleList([nn.Linear(4096, 4096) for _ in range(6)])


def child(model, ctx):
    "One measurement; prints a JSON line"
    import torch
    torch.set_num_threads(CONFIG['threads'])
    from fasterprune.sparsifier import Sparsifier
    torch.manual_seed(CONFIG['seed'])
    m = resnet50_shapes() if model == 'resnet50' else linear6()
    sp = Sparsifier(m, CONFIG['granularity'], ctx, criteria=CONFIG['criterion'], prune_output=CONFIG['prune_output'])
    r = status_mib('VmRSS'); t = time.perf_counter()
    sp.attach()
    attach_s, attach_mb = time.perf_counter() - t, status_mib('VmRSS') - r
    reset = reset_peak_rss()
    r0, hwm0 = status_mib('VmRSS'), status_mib('VmHWM')
    t0 = time.perf_counter()
    sp.prune(CONFIG['sparsity'])
    dt = time.perf_counter() - t0
    peak = status_mib('VmHWM')
    t1 = time.perf_counter()
    sp.prune(CONFIG['sparsity'])   # the same prune again, on weights now 90 % exact zeros (the ties of a pruned model)
    repeat = time.perf_counter() - t1
    ns = [l.weight.numel() for l in sp.layers.values()]
    pruned = sum(int((~l.weight_mask).sum()) for l in sp.layers.values())
    f = CONFIG['sparsity']/100
    expected = round(f*sum(ns)) if ctx == 'global' else sum(round(f*n) for n in ns)
    print(json.dumps(dict(seconds=dt, repeat_seconds=repeat, peak_mb=peak - r0, attach_s=attach_s, attach_mb=attach_mb, params=sum(ns),
                          layers=len(ns), exact=pruned == expected, peak_reset=reset, peak_before_mb=hwm0 - r0)))

def run_case(model, ctx, runs):
    env = dict(os.environ, OMP_NUM_THREADS=str(CONFIG['threads']), MKL_NUM_THREADS=str(CONFIG['threads']))
    res = []
    for _ in range(runs):
        p = subprocess.run([sys.executable, __file__, '--child', model, ctx], capture_output=True, text=True, env=env)
        if p.returncode: raise RuntimeError(f"{model}/{ctx} failed:\n{p.stderr[-3000:]}")
        res.append(json.loads(p.stdout.strip().splitlines()[-1]))
    secs, mbs = [r['seconds'] for r in res], [r['peak_mb'] for r in res]
    ref, goal = CONFIG['reference'][f'{model}/{ctx}'], CONFIG['goals'].get(f'{model}/{ctx}', [None, None])
    return dict(model=model, context=ctx, params=res[0]['params'], layers=res[0]['layers'],
                seconds_median=statistics.median(secs), seconds_runs=secs,
                repeat_median=statistics.median(r['repeat_seconds'] for r in res),
                peak_mb_median=statistics.median(mbs), peak_mb_max=max(mbs),
                attach_s_median=statistics.median(r['attach_s'] for r in res),
                attach_mb_median=statistics.median(r['attach_mb'] for r in res),
                exact=all(r['exact'] for r in res), peak_reset=all(r['peak_reset'] for r in res),
                fasterai_seconds=ref[0], fasterai_peak_mb=ref[1], goal_seconds=goal[0], goal_peak_mb=goal[1])

def _f(x, fmt): return '-' if x is None else format(x, fmt)

def markdown(rows, load):
    out = [f"One `Sparsifier.prune({CONFIG['sparsity']})` call, granularity '{CONFIG['granularity']}', criterion "
           f"`{CONFIG['criterion']}`, every layer pruned (`prune_output=True`). Each run is a fresh subprocess with "
           f"`torch.set_num_threads({CONFIG['threads']})`; the bool masks are attached before the timed call (their cost "
           f"is the last column). Seconds: median of {CONFIG['runs']} runs. 'Repeated': the same `prune` called again in the same process, on weights that are now exact zeros where masked. Peak: RSS high-water mark during the call "
           "minus RSS before it (/proc/self/status VmHWM and VmRSS, the mark reset through /proc/self/clear_refs).", "",
           "| case | weights | seconds (median) | runs | repeated prune s (median) | peak RSS +MB | fasterai 0.4.1 s | fasterai +MB | goal | exact count | attach s / +MB |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = ' & '.join(g for g in [r['goal_seconds'] and f"<= {r['goal_seconds']} s", r['goal_peak_mb'] and f"<= +{r['goal_peak_mb']} MB"] if g) or '-'
        out.append(f"| {r['model']} {r['context']} | {r['params']/1e6:.1f}M in {r['layers']} layers | {r['seconds_median']:.3f} | "
                   f"{', '.join(f'{s:.3f}' for s in r['seconds_runs'])} | {r['repeat_median']:.3f} | {r['peak_mb_median']:.0f} (max {r['peak_mb_max']:.0f}) | "
                   f"{_f(r['fasterai_seconds'], '.2f')} | {_f(r['fasterai_peak_mb'], '.0f')} | {goal} | {'yes' if r['exact'] else 'NO'} | "
                   f"{r['attach_s_median']:.3f} / {r['attach_mb_median']:.0f} |")
    out += ["", f"Load average of this shared 2-core machine at the start and end of the run: {load[0]} and {load[1]}; "
            "timings grow with it. Fresh memory pages are expensive on this VM, so the timed call allocates as little "
            "as possible: with `large_final`, scores are computed chunk by chunk into cache-sized temporaries and never "
            "held for a whole layer, and the selection keeps only the few scores near the threshold.", ""]
    return "\n".join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--child', nargs=2, metavar=('MODEL', 'CONTEXT'), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(*a.child)
    import torch
    torch.set_num_threads(CONFIG['threads'])
    sys.path.insert(0, str(HERE))
    from _common import write_results
    t, load0 = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    rows = [run_case(m, c, CONFIG['runs']) for m, c in CONFIG['cases']]
    load1 = [round(x, 2) for x in os.getloadavg()]
    write_results(NAME, CONFIG, dict(cases=rows, load_average_start=load0, load_average_end=load1),
                  markdown(rows, (load0, load1)), __file__, time.perf_counter() - t)

if __name__ == '__main__': main()
