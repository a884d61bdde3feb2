"""bench/gpu.py runs once on a GPU, unattended: its report must show every part whatever happened to the others (not
run, skipped by the time guard, failed half way), and its count check must catch a wrong count. The whole script runs
on the CPU with `--smoke` (about a minute: not in CI)."""
import importlib.util, json, sys
from pathlib import Path
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1]/'bench'
sys.path.insert(0, str(BENCH))
_spec = importlib.util.spec_from_file_location('_bench_gpu', BENCH/'gpu.py')
gpu = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(gpu)

def test_report_survives_missing_skipped_and_failed_parts():
    cfg = gpu.CONFIG
    assert 'not run' in gpu.markdown({}, cfg)
    res = dict(env=dict(device='X', torch='t', smoke=False),
               step=dict(step_ms=30., runs_ms=[30.], weights=25_000_000),
               recompute_weight_local=dict(layers=53, error='RuntimeError: boom\nsecond line'),   # failed half way
               recompute_weight_global=dict(skipped='time guard: 3 s left'),
               linear_1b=dict(weights=10, error='OutOfMemoryError: CUDA out of memory'),          # partial figures
               compile={'torch.compile(model)': dict(error='E'), 'error': 'Deadline: late'},
               fasterai=dict(runs=dict(dense=[1.]), dense_ms_per_batch=1., dense_sparsity=0., dense_updates=None,
                             dense_layers=None, stopped='time guard: round 1, fasterprune and after not run'))
    md = gpu.markdown(res, cfg)
    assert 'median step 30.00 ms' in md and 'boom second line' in md and 'time guard: 3 s left' in md
    assert 'could not show' not in md and '**error**: OutOfMemoryError' in md
    assert '- compile: Deadline: late' in md and '- compile, torch.compile(model): E' in md
    assert 'fasterprune | not run (time guard)' in md and 'round 1' in md
    json.dumps(res, allow_nan=False)                                    # what write_results stores

def test_exact_counts_catch_a_wrong_mask():
    from fasterprune.sparsifier import Sparsifier
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.Flatten(), nn.Linear(16, 2))
    for g, ctx in (('weight', 'local'), ('weight', 'global'), ('filter', 'local')):
        sp = Sparsifier(m, g, ctx)
        sp.prune(50)
        assert gpu.exact(sp, 50, g, ctx) and not gpu.exact(sp, 60, g, ctx)
        l = next(iter(sp.layers.values()))
        l.weight_mask.view(-1)[l.weight_mask.view(-1).nonzero()[0]] = False    # one more weight (or filter) pruned
        if g == 'filter': l.weight_mask[int(l.weight_mask.reshape(8, -1).any(1).nonzero()[0])] = False
        assert not gpu.exact(sp, 50, g, ctx)
        sp.detach()
