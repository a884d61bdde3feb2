"""onnxruntime latency of pruned models: dense vs compacted vs compacted+int8, for a ResNet-18-shaped CNN and a BERT-style model.

Run: .venv/bin/python bench/onnx_latency.py   (writes bench/results/onnx_latency.md and .json; a few minutes on 2 cores)

Each model is pruned one-shot (untrained weights: latency and size do not depend on the values), compacted with
`fasterprune.export.compact`, and written with `fasterprune.deploy.export_onnx` (BatchNorms folded; onnxruntime's
outputs checked against PyTorch). The ONNX files of one model are then timed in onnxruntime (CPU execution provider,
one intra-op thread, default graph optimisations), alternately in the same loop after a warm-up: median of `runs` calls."""
import sys, time, statistics, warnings, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import _common

NAME = 'onnx_latency'
CONFIG = dict(
    threads=1, runs=40, warmup=5, seed=0,
    resnet=dict(model='resnet18_32() (11.2M params), 32x32 inputs', granularity='coupled', sparsity=50, batches=[1, 8],
                variants=['dense', 'dense int8', 'compacted', 'compacted int8', 'compacted int8 dynamic (ConvInteger)']),
    bert=dict(model='transformers BertForSequenceClassification, random weights: hidden 256, 4 layers, 4 heads, '
                    'intermediate 1024, vocabulary 8000, 2 labels', hidden=256, layers=4, heads=4, intermediate=1024,
              vocab=8000, seq_len=64, granularity='filter', include='*intermediate.dense', sparsity=50, batches=[1, 8],
              variants=['dense', 'dense int8', 'compacted', 'compacted int8']),
)


def session(path):
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = CONFIG['threads']; so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])

def latency(sessions:dict, feed:dict)->dict:
    "Median ms per call of each session on `feed`, timed alternately"
    ts = {k: [] for k in sessions}
    for i in range(CONFIG['warmup'] + CONFIG['runs']):
        for k, s in sessions.items():
            t = time.perf_counter(); s.run(None, feed); dt = time.perf_counter() - t
            if i >= CONFIG['warmup']: ts[k].append(dt)
    return {k: 1e3*statistics.median(v) for k, v in ts.items()}

def measure(models:dict, x, batches, d:Path, variants):
    "Export each variant, then time them alternately at each batch size: rows of the table"
    import torch
    from fasterprune.deploy import export_onnx
    rows, files = {}, {}
    for v in variants:
        base = models['compacted' if v.startswith('compacted') else 'dense']
        q = 'dynamic' if 'dynamic' in v else ('int8' in v)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            r = export_onnx(base, x, d/f"{v.replace(' ', '_').replace('(', '').replace(')', '')}.onnx", quantize=q)
        files[v] = r['path']
        ref = base(x).detach()
        out = torch.from_numpy(session(r['path']).run(None, {'input': x.numpy()})[0])
        rows[v] = dict(variant=v, params=sum(p.numel() for p in base.parameters()), bytes=r['bytes'],
                       max_abs_diff=r['max_abs_diff'], same_argmax=float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
                       quantization=r.get('quantization', 'float32'))
    sessions = {v: session(f) for v, f in files.items()}
    for b in batches:
        t = latency(sessions, {'input': x[:b].numpy()})
        for v in variants: rows[v][f'ms_b{b}'] = t[v]
    for v in variants:
        for b in batches: rows[v][f'speedup_b{b}'] = rows['dense'][f'ms_b{b}'] / rows[v][f'ms_b{b}']
    return list(rows.values())

def bench_resnet(d):
    import torch
    from fasterprune.demo import resnet18_32
    from fasterprune.sparsifier import Sparsifier
    from fasterprune.export import compact
    c = CONFIG['resnet']
    torch.manual_seed(CONFIG['seed'])
    dense = resnet18_32().eval()
    x = torch.randn(max(c['batches']), 3, 32, 32)
    pruned = resnet18_32().eval(); pruned.load_state_dict(dense.state_dict())
    sp = Sparsifier(pruned, c['granularity'], example_inputs=x[:2]); sp.prune(c['sparsity']); sp.detach()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); small = compact(pruned, x[:2]).eval()
    return measure({'dense': dense, 'compacted': small}, x, c['batches'], d, c['variants'])

def bench_bert(d):
    import torch
    from torch import nn
    _common.declare_torchvision_ops()
    from transformers import BertConfig, BertForSequenceClassification
    from fasterprune.sparsifier import Sparsifier
    from fasterprune.export import compact
    c = CONFIG['bert']
    cfg = BertConfig(vocab_size=c['vocab'], hidden_size=c['hidden'], num_hidden_layers=c['layers'], num_attention_heads=c['heads'],
                     intermediate_size=c['intermediate'], max_position_embeddings=max(128, c['seq_len']), num_labels=2)
    class Logits(nn.Module):
        "The classifier's logits from token ids (one tensor in, one out)"
        def __init__(self, m): super().__init__(); self.m = m
        def forward(self, ids): return self.m(input_ids=ids).logits
    torch.manual_seed(CONFIG['seed'])
    dense = Logits(BertForSequenceClassification(cfg)).eval()
    x = torch.randint(0, c['vocab'], (max(c['batches']), c['seq_len']))
    pruned = Logits(BertForSequenceClassification(cfg)).eval(); pruned.load_state_dict(dense.state_dict())
    sp = Sparsifier(pruned, c['granularity'], include=c['include']); sp.prune(c['sparsity']); sp.detach()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); small = compact(pruned, x[:2]).eval()
    return measure({'dense': dense, 'compacted': small}, x, c['batches'], d, c['variants'])

def table(rows, batches):
    cols = ['variant', 'params', 'MB on disk', 'max abs. difference to PyTorch', 'same argmax'] + \
           [h for b in batches for h in (f'ms, batch {b}', f'speed-up, batch {b}')]
    lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' + '---:|'*(len(cols) - 1)]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['params']/1e6:.2f}M | {r['bytes']/2**20:.1f} | {r['max_abs_diff']:.2g} | "
                     f"{100*r['same_argmax']:.0f} % | " + ' | '.join(f"{r[f'ms_b{b}']:.2f} | {r[f'speedup_b{b}']:.2f}x" for b in batches) + ' |')
    return '\n'.join(lines)

def main():
    import torch
    torch.set_num_threads(CONFIG['threads'])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        res = dict(resnet=bench_resnet(Path(d)), bert=bench_bert(Path(d)))
    c, b = CONFIG['resnet'], CONFIG['bert']
    body = '\n'.join([
        f"## ResNet-18-shaped CNN: {c['model']}, '{c['granularity']}' pruning at {c['sparsity']} %", '',
        table(res['resnet'], c['batches']), '',
        f"## BERT-style model: {b['model']}; sequences of {b['seq_len']} tokens; '{b['granularity']}' pruning at "
        f"{b['sparsity']} % of `{b['include']}` (the feed-forward layers' hidden units)", '',
        table(res['bert'], b['batches']), '',
        "int8: static QDQ quantization (calibrated on the example batch) for the CNN, dynamic for BERT, as "
        "`export_onnx(..., quantize=True)` chooses; 'int8 dynamic (ConvInteger)' is `quantize='dynamic'` on the CNN. "
        "Speed-ups are against the dense float32 file at the same batch size; 'same argmax' compares the predicted "
        "class with PyTorch's on the example batch (random weights, so it is a check of the arithmetic, not of an accuracy).", ''])
    elapsed = time.perf_counter() - t0
    path = _common.write_results(NAME, CONFIG, res, body, __file__, elapsed)
    print(body); print(f'written {path}')

if __name__ == '__main__': main()
