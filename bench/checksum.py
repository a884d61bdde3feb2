"""What the checksums of `save_sparse` / `load_sparse` cost on a 100M-weight checkpoint at 90 % sparsity (issue 25).

Two measurements:

1. Hash throughput on the raw bytes that the checkpoint stores (bitmasks and values): CRC32 (zlib, stdlib), BLAKE2b
   (hashlib, stdlib) and xxh3_64 (the `xxhash` package, only when it is installed: it is no dependency).
2. `save_sparse` and `load_sparse` with and without the checksums, alternately in one run (the order flips every
   round), medians over the rounds. "Without" is the same code with the hash replaced by a constant and the header's
   CRC32 not written: everything else (packing, the atomic write with its fsync, the header checks) is the same.
   The file is written to a temporary directory on the disk of the repository and loaded back from the page cache
   (the fastest load, so the largest share for the checksum). `torch.save` / `torch.load` of the same `state_dict`
   are timed in the same rounds for reference (no checksum checked, no fsync).
3. Inside the calls with checksums: the time spent in the hash itself (every `_checksum` call timed), as a share of
   the call's time, round by round. On a busy machine the end-to-end difference of (2) is within the noise of the
   rounds; this share is not, and it is what the checksums add.

Run: .venv/bin/python bench/checksum.py   (writes bench/results/checksum.md and .json)"""
import contextlib, hashlib, os, statistics, sys, tempfile, time, zlib
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import _common

CONFIG = dict(layers=4, width=5000, dtype='float32', sparsity=90, pruning='Sparsifier, weight, local (magnitude)',
              rounds=15, hash_rounds=5, threads=1, bound_pct=10,
              hashes=['crc32 (zlib)', 'blake2b (hashlib)', 'xxh3_64 (xxhash, if installed)'])

def build():
    "The model: `layers` Linear(width, width) without bias, pruned to `sparsity` % and made permanent"
    import torch
    from torch import nn
    from fasterprune.sparsifier import Sparsifier
    from fasterprune.export import make_permanent
    torch.manual_seed(0)
    w = CONFIG['width']
    m = nn.Sequential(*[nn.Linear(w, w, bias=False) for _ in range(CONFIG['layers'])])
    Sparsifier(m, prune_output=True).prune(CONFIG['sparsity']); make_permanent(m)
    return m

def hashers():
    "{name: function of a buffer}: the stdlib ones, and xxh3_64 where xxhash is installed"
    res = {'crc32 (zlib)': zlib.crc32, 'blake2b (hashlib)': lambda b: hashlib.blake2b(b).digest()}
    try:
        import xxhash
        res['xxh3_64 (xxhash)'] = xxhash.xxh3_64_intdigest
    except ImportError: pass
    return res

@contextlib.contextmanager
def counted_checksum(spent:list):
    "save_sparse / load_sparse with every CRC32 timed, added to `spent[0]`"
    import fasterprune.sparse as sp
    real = sp._checksum
    def timed_crc(b):
        t = time.perf_counter(); r = real(b); spent[0] += time.perf_counter() - t
        return r
    sp._checksum = timed_crc
    try: yield
    finally: sp._checksum = real

@contextlib.contextmanager
def no_checksum():
    "save_sparse / load_sparse with a constant for every CRC32 and no header CRC32 written"
    import fasterprune.sparse as sp
    old = sp._checksum, sp._seal_header
    sp._checksum, sp._seal_header = (lambda b: '00000000'), (lambda path: None)
    try: yield
    finally: sp._checksum, sp._seal_header = old

def timed(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t

def main():
    import torch
    from torch import nn
    from safetensors.torch import load_file
    from fasterprune.sparse import save_sparse, load_sparse, _raw
    torch.set_num_threads(CONFIG['threads'])
    load0, t0 = os.getloadavg(), time.time()
    m = build()
    n_weights = sum(p.numel() for p in m.parameters())
    zeros = sum(int((p == 0).sum()) for p in m.parameters())
    target = nn.Sequential(*[nn.Linear(CONFIG['width'], CONFIG['width'], bias=False) for _ in range(CONFIG['layers'])])
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as d:
        path, pt = Path(d)/'m.safetensors', Path(d)/'m.pt'
        save_sparse(m, path)
        stored = [_raw(t) for t in load_file(str(path)).values()]
        n_bytes, file_bytes = sum(b.nbytes for b in stored), path.stat().st_size
        hash_s = {}
        for name, h in hashers().items():
            hash_s[name] = statistics.median(timed(lambda: [h(b) for b in stored]) for _ in range(CONFIG['hash_rounds']))
        times = {k: [] for k in ('save_with', 'save_without', 'load_with', 'load_without', 'torch_save', 'torch_load')}
        share = {'save': [], 'load': []}
        sd = m.state_dict()
        for r in range(CONFIG['rounds']):
            for with_crc in ([True, False] if r % 2 == 0 else [False, True]):
                tag = 'with' if with_crc else 'without'
                for op, f in (('save', lambda: save_sparse(m, path)), ('load', lambda: load_sparse(target, path))):
                    spent = [0.]
                    with (counted_checksum(spent) if with_crc else no_checksum()): times[f'{op}_{tag}'].append(timed(f))
                    if with_crc: share[op].append(100*spent[0]/times[f'{op}_{tag}'][-1])
            times['torch_save'].append(timed(lambda: torch.save(sd, pt)))
            times['torch_load'].append(timed(lambda: torch.load(pt)))
        assert all(torch.equal(a, b) for a, b in zip(sd.values(), target.state_dict().values()))
    load1 = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    over = {op: 100*(med[f'{op}_with']/med[f'{op}_without'] - 1) for op in ('save', 'load')}
    paired = {op: statistics.median(100*(a/b - 1) for a, b in zip(times[f'{op}_with'], times[f'{op}_without']))
              for op in ('save', 'load')}
    inside = {op: statistics.median(v) for op, v in share.items()}
    res = dict(inside_share_pct=inside, inside_share_max_pct={op: max(v) for op, v in share.items()}, n_weights=n_weights, zero_pct=100*zeros/n_weights, stored_bytes=n_bytes, file_bytes=file_bytes,
               hash_s=hash_s, times_s=times, median_s=med, overhead_pct=over, paired_overhead_pct=paired,
               load_average_start=load0, load_average_end=load1)
    gb = lambda s: n_bytes/s/1e9
    rows = '\n'.join(f"| {k} | {gb(s):.2f} | {1e3*s:.1f} | {100*s/med['save_without']:.1f} | {100*s/med['load_without']:.1f} |"
                     for k, s in hash_s.items())
    spread = lambda v: f"{min(v):.2f}-{max(v):.2f}"
    ops = '\n'.join(f"| {op} | {med[f'{op}_without']:.3f} ({spread(times[f'{op}_without'])}) | {med[f'{op}_with']:.3f} "
                    f"({spread(times[f'{op}_with'])}) | {over[op]:+.1f} | {paired[op]:+.1f} | {inside[op]:.1f} (max "
                    f"{res['inside_share_max_pct'][op]:.1f}) |" for op in ('save', 'load'))
    ok = all(v <= CONFIG['bound_pct'] for v in inside.values())
    body = f"""
Checkpoint: {CONFIG['layers']} x Linear({CONFIG['width']}, {CONFIG['width']}), {n_weights:,} {CONFIG['dtype']} weights,
{res['zero_pct']:.1f} % zeros; the file stores {n_bytes/1e6:.1f} MB of tensors (bitmasks and values; file
{file_bytes/1e6:.1f} MB). {CONFIG['threads']} torch thread; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end
(a machine shared with other jobs: the ratios, measured alternately, are the figures to read).

## Hashing the stored bytes

| hash | GB/s | ms for this checkpoint | % of a save without checksum | % of a load without checksum |
|---|---|---|---|---|
{rows}

## save_sparse and load_sparse with and without the CRC32 checksums

Medians of {CONFIG['rounds']} rounds (seconds; min-max in brackets), in alternating order; overhead = with / without - 1,
of the medians and the median of the per-round ratios; hash share = time inside the CRC32 calls / time of the call,
median (and max) of the rounds with checksums.

| operation | without (s) | with CRC32 (s) | overhead % (medians) | overhead % (per round) | hash share % |
|---|---|---|---|---|---|
{ops}

For reference, in the same rounds: `torch.save` {med['torch_save']:.3f} s and `torch.load` {med['torch_load']:.3f} s for the
same `state_dict` ({4*n_weights/1e6:.0f} MB; no checksum checked on load, no fsync).

Bound: at most {CONFIG['bound_pct']} % of save time and of load time, read from the hash share (the end-to-end overhead
is within the spread of the rounds on a busy machine): **{'met' if ok else 'NOT met'}**.
"""
    _common.write_results('checksum', CONFIG, res, body, __file__, time.time() - t0)
    print(body)

if __name__ == '__main__': main()
