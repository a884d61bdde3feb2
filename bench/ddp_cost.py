"""What DDP's buffer broadcast costs while pruning: bytes sent per step and step time, with the masks and kept values
(`weight_mask`, `weight_pruned`) in the broadcast (torch's default, and what `SparsifyCallback` does: they are ordinary
buffers, equal on every rank, so the broadcast changes nothing) and kept out of it (through DDP's private
`parameters_to_ignore`, which fasterprune does not touch: shown here only to measure what the broadcast costs).

Two CPU processes (gloo) as torchrun starts them; each trains the digits CNN in DistributedDataParallel with its layers
pruned by a `Sparsifier` (kept values on, as during a schedule), alternating blocks of steps with and without.
Run: .venv/bin/python bench/ddp_cost.py   (writes bench/results/ddp_cost.md and .json); --smoke: a few steps, no files"""
import json, os, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))

CONFIG = dict(models={'digits_cnn(width=32)': 32, 'digits_cnn(width=128)': 128}, nproc=2, backend='gloo', bs=32,
              sparsity=90, blocks=6, steps_per_block=10, warmup=5, threads=1)

def _buffer_bytes(ddp):
    "Bytes of the buffers DDP broadcasts from rank 0 before each forward pass (its own list, refreshed at each sync)"
    ddp._assign_modules_buffers()
    return sum(b.numel()*b.element_size() for b in ddp.modules_buffers)

def _worker(out, smoke):
    import torch, torch.distributed as dist
    from torch import nn
    from fasterprune.sparsifier import Sparsifier
    from fasterprune.demo import digits_cnn
    torch.set_num_threads(CONFIG['threads'])
    dist.init_process_group(CONFIG['backend'])
    blocks, steps = (2, 2) if smoke else (CONFIG['blocks'], CONFIG['steps_per_block'])
    res = {}
    for name, width in CONFIG['models'].items():
        torch.manual_seed(0)
        model = digits_cnn(width)
        sp = Sparsifier(model)
        sp.attach(); sp.prune(CONFIG['sparsity'], keep_pruned_values=True)
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=1e-3)
        x, y = torch.randn(CONFIG['bs'], 1, 8, 8), torch.randint(0, 10, (CONFIG['bs'],))
        def step():
            t = time.perf_counter()
            nn.functional.cross_entropy(ddp(x), y).backward(); opt.step(); opt.zero_grad(); sp.apply_masks()
            return time.perf_counter() - t
        ignored = set(ddp.parameters_to_ignore)
        masks = {f"{n}.{b}" for n in sp.layers for b in ('weight_mask', 'weight_pruned')}
        def variant(keep_out):    # DDP's private set, read again at every buffer sync: for this measurement only
            ddp.parameters_to_ignore.clear(); ddp.parameters_to_ignore.update(ignored | (masks if keep_out else set()))
        sizes = {}
        for keep_out in (False, True): variant(keep_out); sizes[keep_out] = _buffer_bytes(ddp)
        for _ in range(CONFIG['warmup']): step()
        times = {False: [], True: []}
        for b in range(blocks):
            for keep_out in ((False, True) if b % 2 == 0 else (True, False)):   # alternate, so drift hits both alike
                variant(keep_out); times[keep_out] += [step() for _ in range(steps)]
        res[name] = dict(params=sum(p.numel() for p in model.parameters()),
                         grad_bytes=sum(p.numel()*p.element_size() for p in model.parameters()),
                         buffer_bytes_broadcast=sizes[False], buffer_bytes_kept_out=sizes[True],
                         ms_broadcast=1e3*statistics.median(times[False]), ms_kept_out=1e3*statistics.median(times[True]))
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(res))
    dist.destroy_process_group()

def _launch(out, smoke):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    env = dict(os.environ, WORLD_SIZE=str(CONFIG['nproc']), MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
               OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    args = [sys.executable, __file__, '--worker', out] + (['--smoke'] if smoke else [])
    ps = [subprocess.Popen(args, env=dict(env, RANK=str(r), LOCAL_RANK=str(r))) for r in range(CONFIG['nproc'])]
    if any(p.wait() for p in ps): raise SystemExit('a worker failed')
    return json.loads(Path(out, 'rank0.json').read_text())

def _table(res):
    rows = ['| model | parameters | gradients all-reduced per step | buffers broadcast per step: default | kept out | step ms: default | kept out |',
            '|---|---:|---:|---:|---:|---:|---:|']
    for k, r in res.items():
        rows.append(f"| {k} | {r['params']:,} | {r['grad_bytes']/1e3:,.0f} kB | {r['buffer_bytes_broadcast']/1e3:,.1f} kB | "
                    f"{r['buffer_bytes_kept_out']/1e3:,.1f} kB | {r['ms_broadcast']:.2f} | {r['ms_kept_out']:.2f} |")
    return '\n'.join(rows)

if __name__ == '__main__':
    if '--worker' in sys.argv: _worker(sys.argv[sys.argv.index('--worker') + 1], '--smoke' in sys.argv); sys.exit()
    import _common
    smoke, t = '--smoke' in sys.argv, time.time()
    with tempfile.TemporaryDirectory() as d: res = _launch(d, smoke)
    print(_table(res))
    if not smoke:
        body = ("Rank 0's numbers (median step: forward, backward, optimizer step, masks re-applied), two processes on one "
                "machine's CPU with gloo. 'default': torch broadcasts every buffer, so the masks and the kept values "
                "travel at every step; this is what `SparsifyCallback` does (they are equal on every rank by "
                "construction, so the copy changes nothing: tests/test_distributed.py checks it at every batch). "
                "'kept out': left out through DDP's private `parameters_to_ignore`, which fasterprune does not use; "
                "shown for what the broadcast costs.\n\n" + _table(res))
        _common.write_results('ddp_cost', CONFIG, res, body, __file__, time.time() - t)
