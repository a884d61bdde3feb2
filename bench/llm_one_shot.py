"""One-shot pruning of a small causal LM, fasterprune vs llm-compressor 0.14: perplexity, time and peak memory.

A LLaMA-shaped model (transformers, from a config) is trained here for a few minutes on Python's standard library
sources, byte-level tokens (vocabulary 256). Both libraries prune copies of the same trained model from the same
calibration sequences; perplexity is measured on held-out stdlib files. fasterprune runs in the project's venv,
llm-compressor in its own (`/work/venv-llmc`, transformers 5.17: it refuses newer ones): this script calls itself there
with `--case`. Time and peak memory (peak RSS during the call minus RSS before it, after resetting the peak) are taken
in-process, the same way for both: each case runs once unmeasured on a copy of the model (code pages loaded, lazy
initialisation done), then measured; glibc's mmap threshold is fixed (MALLOC_MMAP_THRESHOLD_) so that freed buffers go
back to the system and the warm-up hides no allocation. The two libraries alternate case by case, 1 thread each, on a
shared machine: times are compared as ratios, with the load average of each case.
Also: a measured outlier check (one Linear whose inputs have a few large channels), fasterprune with llm-compressor's
per-row count of Wanda (floor), and fasterprune's SparseGPT from 1-sequence batches (only the summation order changes).
"""
from __future__ import annotations
import json, math, os, subprocess, sys, sysconfig, time, zlib
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import status_mib, reset_peak_rss, write_results

CONFIG = dict(model=dict(vocab_size=256, hidden_size=128, intermediate_size=512, num_hidden_layers=6, num_attention_heads=4,
                         num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False),
              train=dict(steps=6000, batch_size=32, seq_len=128, lr=3e-3, seed=0, train_bytes=4_000_000,
                         where='the device machine (H200), its Python 3.12 stdlib, same held-out rule; see train_model'),
              calib=dict(n=32, seq_len=128, seed=1), eval=dict(n=64, seq_len=128),
              sparsities=['50', '2:4', '70'], methods=['magnitude', 'wanda', 'sparsegpt', 'owl'],
              owl=dict(lmbda=0.08, m=5), llmc_venv='/work/venv-llmc', batch_size=8,
              llmc=dict(targets=['Linear'], ignore=['re:.*lm_head']),   # a plain 'lm_head' is not matched (see llmc_case)
              measure=dict(warmup=True, malloc_mmap_threshold=65536),
              outlier=dict(dim=256, outliers=4, factor=20., tokens=2048, sparsity=50, seed=0))
NAME = 'llm_one_shot'
WORK = Path('/tmp/fasterprune_llm_one_shot')


def held_out(name:str)->bool: return zlib.crc32(name.encode()) % 10 == 9

def stdlib_bytes():
    "(train bytes, held-out bytes): this Python's stdlib .py files sorted by name; held out: crc32(name) % 10 == 9"
    files = sorted(Path(sysconfig.get_paths()['stdlib']).glob('*.py'))
    tr, ev = bytearray(), bytearray()
    for f in files: (ev if held_out(f.name) else tr).extend(f.read_bytes())
    return bytes(tr[:CONFIG['train']['train_bytes']]), bytes(ev)

def windows(data, n, T, seed=None):
    "n windows of T+1... tokens: random (seeded) or consecutive from the start"
    import torch
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    if seed is None: return t[:n*T].reshape(n, T)
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(t) - T - 1, (n,), generator=g)
    return torch.stack([t[s:s+T] for s in starts])

@__import__('functools').lru_cache(None)
def _data():
    import torch
    tr, ev = stdlib_bytes()
    c, e = CONFIG['calib'], CONFIG['eval']
    return tr, windows(tr, c['n'], c['seq_len'], c['seed']), windows(ev, e['n'], e['seq_len'])

def perplexity(model, ids, bs=16):
    import torch
    model.eval(); tot, n = 0., 0
    with torch.no_grad():
        for i in range(0, len(ids), bs):
            x = ids[i:i+bs]
            logits = model(input_ids=x).logits[:, :-1]
            tot += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction='sum'))
            n += x[:, 1:].numel()
    return math.exp(tot / n)

def train_key(): return json.dumps([CONFIG['model'], CONFIG['train']], sort_keys=True)

def train_model(tr:bytes, path:Path):
    "Train the model on the bytes `tr` (on a GPU when there is one) and save it with save_pretrained under `path`"
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    t = CONFIG['train']
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.manual_seed(t['seed'])
    model = LlamaForCausalLM(LlamaConfig(**CONFIG['model'])).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=t['lr'], weight_decay=0.01)
    data = torch.frombuffer(bytearray(tr), dtype=torch.uint8).long()
    g = torch.Generator().manual_seed(t['seed'])
    t0 = time.perf_counter()
    model.train()
    for step in range(t['steps']):
        s = torch.randint(0, len(data) - t['seq_len'] - 1, (t['batch_size'],), generator=g)
        x = torch.stack([data[i:i+t['seq_len']] for i in s]).to(dev)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(); loss.backward(); opt.step()
        for pg in opt.param_groups: pg['lr'] = t['lr'] * (1 - 0.9 * (step + 1) / t['steps'])
    model = model.cpu().eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    info = dict(steps=t['steps'], seconds=time.perf_counter() - t0, last_loss=float(loss.detach()), device=dev,
                gpu=torch.cuda.get_device_name(0) if dev == 'cuda' else None, torch=torch.__version__)
    (path/'train.json').write_text(json.dumps(info))
    (path/'key.json').write_text(train_key())
    return model, info

def trained_model():
    "The model trained with this CONFIG: the cached one (trained on the device machine, see --train) or trained here"
    from transformers import LlamaForCausalLM
    path = WORK/'model'
    if (path/'key.json').exists() and (path/'key.json').read_text() == train_key():
        return LlamaForCausalLM.from_pretrained(path).eval(), json.loads((path/'train.json').read_text())
    return train_model(_data()[0], path)

def trim():
    "Give free heap memory back to the system (glibc)"
    import ctypes
    try: ctypes.CDLL('libc.so.6').malloc_trim(0)
    except OSError: pass

def measured(f):
    "(result, seconds, peak extra MiB) of f()"
    trim()
    reset = reset_peak_rss(); r0 = status_mib('VmRSS'); t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t, status_mib('VmHWM') - r0

def case_args(method, sp):
    "(method, granularity, sparsity %, layer_sparsity) of a table cell; None where it does not apply"
    if method == 'owl' and sp == '2:4': return None
    g = '2:4' if sp == '2:4' else 'weight'
    return ('wanda' if method == 'owl' else method), g, (50. if sp == '2:4' else float(sp)), ('owl' if method == 'owl' else None)

def sparsity_of(model):
    import torch
    ls = [m for n,m in model.named_modules() if isinstance(m, torch.nn.Linear) and 'lm_head' not in n]
    return 100 * sum(int((m.weight == 0).sum()) for m in ls) / sum(m.weight.numel() for m in ls)

SCALE = False    # --scale: the cases run on WORK/'scale' (the 125M-layer-size model, no perplexity)

def src():
    "(directory of the model and calibration data, whether to measure perplexity)"
    return (WORK/'scale', False) if SCALE else (WORK, True)

def make_scale():
    "Save the random 2-block model of CONFIG['scale'] and its calibration ids under WORK/'scale'"
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    c = CONFIG['scale']
    torch.manual_seed(c['seed'])
    LlamaForCausalLM(LlamaConfig(**c['model'])).eval().save_pretrained(WORK/'scale'/'model')
    g = torch.Generator().manual_seed(c['seed'])
    torch.save(torch.randint(0, c['model']['vocab_size'], (c['calib_n'], c['seq_len']), generator=g), WORK/'scale'/'calib.pt')

def floor_sparsities(model, s):
    "{layer: percent} giving every decoder Linear floor(s·in) pruned weights per row: llm-compressor's Wanda count"
    import torch
    return {n: 100 * math.floor(s / 100 * m.in_features) / m.in_features for n,m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and 'lm_head' not in n}

def fasterprune_case(method, sp):
    "One case in this process (a fresh subprocess): the model loaded from WORK, pruned by prune_one_shot"
    import torch
    torch.set_num_threads(1)
    from _common import declare_torchvision_ops; declare_torchvision_ops()
    from transformers import LlamaForCausalLM
    from fasterprune.oneshot import prune_one_shot
    load = os.getloadavg()[0]
    d, ppl = src()
    calib = torch.load(d/'calib.pt')
    base = method.split('-')[0]          # variants: 'wanda-floor' (llmc's count), 'sparsegpt-bs1' (1-sequence batches)
    meth, g, s, ls = case_args(base, sp)
    bs = 1 if method.endswith('-bs1') else CONFIG['batch_size']
    batches = [calib[i:i+bs] for i in range(0, len(calib), bs)]
    def run(mm, snapshot=True):
        lsp = floor_sparsities(mm, s) if method.endswith('-floor') else ls
        return prune_one_shot(mm, batches, s, method=meth, granularity=g, layer_sparsity=lsp, snapshot=snapshot,
                              owl_lambda=CONFIG['owl']['lmbda'], owl_m=CONFIG['owl']['m'])
    if CONFIG['measure']['warmup']: run(LlamaForCausalLM.from_pretrained(d/'model').eval())
    m = LlamaForCausalLM.from_pretrained(d/'model').eval()
    _, secs, peak = measured(lambda: run(m))
    row = dict(lib='fasterprune', method=method, sparsity=sp, ppl=perplexity(m, torch.load(d/'eval.pt')) if ppl else None,
               seconds=secs, peak_mib=peak, realised=sparsity_of(m), load=load, scale=SCALE)
    if not method.endswith(('-bs1', '-floor')):    # the same without the snapshot that restores the weights on error
        m = LlamaForCausalLM.from_pretrained(d/'model').eval()
        _, row['seconds_no_snapshot'], row['peak_mib_no_snapshot'] = measured(lambda: run(m, snapshot=False))
    print('ROW ' + json.dumps(row), flush=True)

def llmc_case(method, sp):
    "Runs in llm-compressor's venv, one case per process, printed as a JSON line"
    import copy, logging, torch, warnings
    torch.set_num_threads(1)
    from transformers import LlamaForCausalLM
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import WandaPruningModifier, SparseGPTModifier, MagnitudePruningModifier
    load = os.getloadavg()[0]
    d, ppl = src()
    calib = torch.load(d/'calib.pt')
    ds = Dataset.from_dict({'input_ids': calib.tolist(), 'attention_mask': torch.ones_like(calib).tolist()})
    # oneshot wants a processor when given a dataset, although this one is tokenized already: a 256-entry word-level one
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({f'b{i}': i for i in range(int(calib.max()) + 1)}, unk_token='b0')),
                                  unk_token='b0', pad_token='b0')
    # ignore: each target Linear is matched again under the name f'{name}.' (with a trailing dot, sgpt_base.py's
    # on_calibration_start), which the plain name 'lm_head' does not match: 're:.*lm_head' does (llm-compressor's advice)
    targets, ignore = CONFIG['llmc']['targets'], CONFIG['llmc']['ignore']
    meth, g, s, ls = case_args(method, sp)
    kw = dict(sparsity=s/100, mask_structure=g if g != 'weight' else '0:0', targets=targets, ignore=ignore)
    if ls == 'owl': kw.update(sparsity_profile='owl', owl_m=CONFIG['owl']['m'], owl_lmbda=CONFIG['owl']['lmbda'])
    def recipe():
        if meth == 'wanda': return WandaPruningModifier(**kw)
        if meth == 'sparsegpt': return SparseGPTModifier(**{**kw, 'block_size': 128, 'dampening_frac': 0.01})
        return MagnitudePruningModifier(targets=r're:.*layers\..*_proj$', init_sparsity=s/100, final_sparsity=s/100,
                                        start=0, end=1, update=1, mask_structure=g if g != 'weight' else 'unstructured')
    run = lambda mm, r: oneshot(model=mm, processor=tok, dataset=ds, recipe=r, num_calibration_samples=len(calib),
                                max_seq_length=calib.shape[1], shuffle_calibration_samples=False, batch_size=CONFIG['batch_size'])
    try:
        r = recipe()
        if CONFIG['measure']['warmup']: run(LlamaForCausalLM.from_pretrained(d/'model').eval(), recipe())
        m = LlamaForCausalLM.from_pretrained(d/'model').eval()
        _, secs, peak = measured(lambda: run(m, r))
        row = dict(lib='llm-compressor', method=method, sparsity=sp, ppl=perplexity(m, torch.load(d/'eval.pt')) if ppl else None,
                   seconds=secs, peak_mib=peak, realised=sparsity_of(m), load=load, scale=SCALE)
        if row['realised'] < 1:
            row['error'] = (f"{type(r).__name__} under oneshot pruned nothing (realised {row['realised']:.1f} %): "
                            "it prunes on training events only")
    except Exception as e:
        row = dict(lib='llm-compressor', method=method, sparsity=sp, error=f"{type(e).__name__}: {str(e)[:300]}")
    print('ROW ' + json.dumps(row), flush=True)

def outlier_check():
    "Relative output error of magnitude and Wanda pruning on one Linear whose inputs have a few large channels"
    import copy, torch
    from fasterprune.oneshot import prune_one_shot
    o = CONFIG['outlier']
    torch.manual_seed(o['seed'])
    lin = torch.nn.Linear(o['dim'], o['dim'], bias=False)
    x = torch.randn(o['tokens'], o['dim'])
    x[:, :o['outliers']] *= o['factor']
    y = lin(x).detach()
    res = {}
    for meth in ('magnitude', 'wanda', 'sparsegpt'):
        m = torch.nn.Sequential(copy.deepcopy(lin), torch.nn.Identity())
        prune_one_shot(m, [x[:1024], x[1024:]], o['sparsity'], method=meth, prune_output=True)
        res[meth] = float((m(x) - y).norm() / y.norm())
    return res

def main():
    import torch
    torch.set_num_threads(1)
    from _common import declare_torchvision_ops; declare_torchvision_ops()
    t0 = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    model, train_info = trained_model()
    _, calib, ev = _data()
    torch.save(calib, WORK/'calib.pt'); torch.save(ev, WORK/'eval.pt')
    dense = perplexity(model, ev)
    rows = [dict(lib='both', method='dense', sparsity='0', ppl=dense)]
    print(rows, train_info, flush=True)
    py = Path(CONFIG['llmc_venv'])/'bin'/'python'
    llmc_error = None if py.exists() else f"no llm-compressor venv at {CONFIG['llmc_venv']}"
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MALLOC_MMAP_THRESHOLD_': str(CONFIG['measure']['malloc_mmap_threshold'])}
    cases = [(sp, m, lib) for sp in CONFIG['sparsities'] for m in CONFIG['methods'] if case_args(m, sp) is not None
             for lib in ('fasterprune', 'llm-compressor')]
    cases += [('70', 'wanda-floor', 'fasterprune')] + [(sp, 'sparsegpt-bs1', 'fasterprune') for sp in CONFIG['sparsities']]
    if 'scale' in CONFIG: make_scale()     # (not part of the committed results' CONFIG yet)
    if 'scale' in CONFIG: cases += [('50', m, lib, '--scale') for m in CONFIG['scale']['methods'] for lib in ('fasterprune', 'llm-compressor')]
    for sp, method, lib, *scale in cases:
                exe, pp = (sys.executable, here) if lib == 'fasterprune' else (str(py), '')
                if lib == 'llm-compressor' and not py.exists(): continue
                p = subprocess.run([exe, __file__, '--case', lib, method, sp, *scale], capture_output=True, text=True,
                                   env={**env, 'PYTHONPATH': pp})
                got = [{**json.loads(l[4:]), 'scale': bool(scale)} for l in p.stdout.splitlines() if l.startswith('ROW ')]
                rows += got or [dict(lib=lib, method=method, sparsity=sp, scale=bool(scale), error=f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1][:300] if p.stderr.strip() else ''}")]
                print(rows[-1], flush=True)
    out = outlier_check()
    write_results(NAME, CONFIG, dict(rows=rows, train=train_info, llmc_error=llmc_error, outlier=out, dense_ppl=dense),
                  markdown(rows, train_info, llmc_error, out, dense), __file__, elapsed_s=time.perf_counter() - t0)

def markdown(rows, train_info, llmc_error, out, dense):
    c = CONFIG
    md = [f"Model: LLaMA-shaped, {c['model']['num_hidden_layers']} decoder layers, hidden {c['model']['hidden_size']}, "
          f"byte vocabulary; trained {train_info['steps']} steps of {c['train']['batch_size']} x {c['train']['seq_len']} "
          f"tokens of Python stdlib sources (on {train_info['gpu'] or 'CPU'}, {train_info['seconds']:.0f} s; last loss "
          f"{train_info['last_loss']:.2f}; its weights are cached under {WORK} and reused while CONFIG's model and train "
          f"parts are unchanged); pruning and evaluation on this CPU. Calibration: {c['calib']['n']} x {c['calib']['seq_len']} "
          f"tokens of training text in batches of {c['batch_size']}, the same for both libraries; perplexity on "
          f"{c['eval']['n']} x {c['eval']['seq_len']} held-out tokens. Dense perplexity **{dense:.3f}**. Every Linear of the "
          f"decoder layers is pruned, `lm_head` and embeddings stay dense (llm-compressor: targets {c['llmc']['targets']}, "
          f"ignore {c['llmc']['ignore']}). OWL = Wanda with OWL layer sparsities (λ {c['owl']['lmbda']}, M {c['owl']['m']}). "
          "Time and peak memory: each case in a fresh process, run once unmeasured, then measured (peak RSS minus RSS "
          "before), glibc mmap threshold fixed; the libraries alternate case by case, 1 thread each, on a shared 2-core "
          "machine (load average in the last column): compare times as ratios. fasterprune's peak is given with its "
          "default snapshot (the original weights, kept to restore them on error) and without it (`snapshot=False`); "
          "llm-compressor keeps none.", '',
          '| sparsity | method | fasterprune ppl | llm-compressor ppl | ppl difference | fasterprune time (s) | '
          'llm-compressor time (s) | time ratio | fasterprune peak (MiB) | fasterprune peak, no snapshot (MiB) | '
          'llm-compressor peak (MiB) | load |', '|---|---|---|---|---|---|---|---|---|---|---|---|']
    get = lambda lib, m, s, sc=False: next((r for r in rows if r['lib'] == lib and r['method'] == m and r['sparsity'] == s
                                            and r.get('scale', False) == sc), None)
    errors = {}
    def f(r, k, fmt):
        if r is None: return '-'
        if 'error' in r:
            i = errors.setdefault(r['error'], len(errors) + 1)
            return f"failed ({i})"
        return format(r[k], fmt) if k in r else '-'
    ok = lambda r: r is not None and 'error' not in r
    for sp in c['sparsities']:
        for m in c['methods']:
            if case_args(m, sp) is None: continue
            a, b = get('fasterprune', m, sp), get('llm-compressor', m, sp)
            both = ok(a) and ok(b)
            diff = f"{100 * (a['ppl'] / b['ppl'] - 1):+.2f} %" if both else '-'
            ratio = f"{a['seconds'] / b['seconds']:.2f}" if both else '-'
            loads = '/'.join(format(r['load'], '.1f') for r in (a, b) if ok(r) and 'load' in r)
            md.append(f"| {sp} | {m} | {f(a, 'ppl', '.3f')} | {f(b, 'ppl', '.3f')} | {diff} | {f(a, 'seconds', '.2f')} | "
                      f"{f(b, 'seconds', '.2f')} | {ratio} | {f(a, 'peak_mib', '.1f')} | {f(a, 'peak_mib_no_snapshot', '.1f')} | "
                      f"{f(b, 'peak_mib', '.1f')} | {loads} |")
    if errors: md += [''] + [f"- ({i}) llm-compressor: {e}" for e,i in errors.items()]
    if llmc_error: md += ['', f"llm-compressor: {llmc_error}"]
    fl, lw = get('fasterprune', 'wanda-floor', '70'), get('llm-compressor', 'wanda', '70')
    if ok(fl):
        md += ['', f"Count check: llm-compressor's Wanda prunes `int(s·in)` weights per row, fasterprune `round(s·in)` (at 70 %: "
               f"89 or 90 of 128 inputs; realised {lw['realised'] if ok(lw) else float('nan'):.2f} % and "
               f"{get('fasterprune', 'wanda', '70')['realised']:.2f} %). fasterprune given llm-compressor's counts through "
               f"`layer_sparsity` (realised {fl['realised']:.2f} %): perplexity {fl['ppl']:.3f}"
               + (f" (llm-compressor {lw['ppl']:.3f})." if ok(lw) else '.')]
    bs1 = [(sp, get('fasterprune', 'sparsegpt-bs1', sp), get('fasterprune', 'sparsegpt', sp)) for sp in c['sparsities']]
    if all(ok(r) and ok(q) for _,r,q in bs1):
        md += ['', "Rounding check: fasterprune's SparseGPT from the same sequences in batches of 1 instead of "
               f"{c['batch_size']} (only the order of the Hessian's float32 sums changes): perplexity "
               + ', '.join(f"{sp}: {r['ppl']:.3f} against {q['ppl']:.3f} ({100 * (r['ppl'] / q['ppl'] - 1):+.2f} %)" for sp,r,q in bs1) + '.']
    sc = [(m, get('fasterprune', m, '50', True), get('llm-compressor', m, '50', True)) for m in c.get('scale', {}).get('methods', [])]
    if any(ok(a) for _,a,_ in sc):
        n = c['scale']['model']
        md += ['', f"At the layer size of a 125M LLaMA (hidden {n['hidden_size']}, MLP {n['intermediate_size']}, "
               f"{n['num_hidden_layers']} decoder layers, random weights, calibration {c['scale']['calib_n']} x "
               f"{c['scale']['seq_len']} random tokens in batches of {c['batch_size']}), 50 %, measured the same way:", '',
               '| method | fasterprune time (s) | llm-compressor time (s) | time ratio | fasterprune peak (MiB) | '
               'fasterprune peak, no snapshot (MiB) | llm-compressor peak (MiB) | load |', '|---|---|---|---|---|---|---|---|']
        for m,a,b in sc:
            both = ok(a) and ok(b)
            md.append(f"| {m} | {f(a, 'seconds', '.2f')} | {f(b, 'seconds', '.2f')} | "
                      f"{format(a['seconds'] / b['seconds'], '.2f') if both else '-'} | {f(a, 'peak_mib', '.0f')} | "
                      f"{f(a, 'peak_mib_no_snapshot', '.0f')} | {f(b, 'peak_mib', '.0f')} | "
                      + '/'.join(format(r['load'], '.1f') for r in (a, b) if ok(r)) + ' |')
    md += ['', f"Outlier check: one {c['outlier']['dim']}x{c['outlier']['dim']} Linear, {c['outlier']['outliers']} "
           f"input channels x{c['outlier']['factor']:g}, {c['outlier']['sparsity']} % pruned; relative output error "
           + ', '.join(f"{k} {v:.3f}" for k,v in out.items()) + f"; Wanda / magnitude = {out['wanda']/out['magnitude']:.2f}."]
    return '\n'.join(md)

if __name__ == '__main__':
    if '--md' in sys.argv:        # rewrite the markdown from the JSON results (no new measurement)
        res = json.loads((Path(__file__).parent/'results'/f'{NAME}.json').read_text())
        r = res['results']
        write_results(NAME, CONFIG, r, markdown(r['rows'], r['train'], r['llmc_error'], r['outlier'], r['dense_ppl']), __file__,
                      elapsed_s=res['elapsed_s'])
    elif '--dump' in sys.argv:      # the training bytes, to train on another machine (its stdlib may differ)
        Path(sys.argv[-1]).write_bytes(stdlib_bytes()[0])
    elif '--train' in sys.argv:   # python bench/llm_one_shot.py --train BYTES_FILE OUT_DIR (on the device machine)
        train_model(Path(sys.argv[-2]).read_bytes(), Path(sys.argv[-1]))
    elif '--case' in sys.argv:
        lib, method, sp = sys.argv[sys.argv.index('--case')+1:][:3]
        SCALE = '--scale' in sys.argv
        (fasterprune_case if lib == 'fasterprune' else llmc_case)(method, sp)
    else: main()
