"""A BERT-style classifier from transformers in a fastai fit: attention heads and MLP channels pruned ('coupled'), then
compacted; accuracy and CPU latency before and after.

Run: .venv/bin/python bench/hf_bert.py   (writes bench/results/hf_bert.md and .json; a few minutes on 2 cores)

Data: 128-byte chunks of two standard-library packages' sources (asyncio vs email), which every Python installation
has; the task is to tell which package a chunk comes from. Latency: 1 torch thread, eval mode, inference_mode, batch
8 x 128 tokens; the masked model (pruned weights are zeros, shapes unchanged) and the compacted one are timed
alternately in the same loop (median of `runs` calls each), after warm-up."""
import sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import _common
_common.declare_torchvision_ops()   # this machine's torchvision: see tests/torchvision_ops.py
import torch
from torch import nn
from fastai.basics import *
from copy import deepcopy   # after fastai's names, which include a `copy`
from fasterprune.all import *
from fasterprune.demo import stdlib_bytes, byte_chunks

CONFIG = dict(threads=1, runs=30, warmup=5, batch=8, seq=128, per_class=1500, valid_pct=.2, sparsity=50, seed=0,
              epochs=4, lr=1e-3, prune_epochs=4, prune_lr=5e-4, granularity='coupled', schedule='sched_agp', end_epoch=3,
              model=dict(vocab_size=256, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
                         max_position_embeddings=128, num_labels=2),
              data='128-byte chunks of the asyncio and email standard-library sources, per_class of each')

class Classifier(nn.Module):
    "A Hugging Face sequence classifier as fastai wants it: token ids in, logits out"
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m(input_ids=x).logits

def data(cfg)->DataLoaders:
    "Chunks of the two packages, shuffled with the seed; the last `valid_pct` held out"
    g = torch.Generator().manual_seed(cfg['seed'])
    xs = [byte_chunks(stdlib_bytes(p), cfg['seq']) for p in ('asyncio', 'email')]
    xs = [x[torch.randperm(len(x), generator=g)[:cfg['per_class']]] for x in xs]
    x = torch.cat(xs); y = torch.cat([torch.full((len(t),), i) for i, t in enumerate(xs)])
    idx = torch.randperm(len(x), generator=g)
    ds = list(zip(x[idx], y[idx])); cut = int(len(ds)*(1 - cfg['valid_pct']))
    return DataLoaders(TfmdDL(ds[:cut], bs=32, shuffle=True), TfmdDL(ds[cut:], bs=64))

def n_params(m, part=''): return sum(p.numel() for n, p in m.named_parameters() if part in n)

def run(cfg=CONFIG)->dict:
    from transformers import BertConfig, BertForSequenceClassification
    torch.set_num_threads(cfg['threads'])
    set_seed(cfg['seed'], reproducible=True)
    dls = data(cfg)
    learn = Learner(dls, Classifier(BertForSequenceClassification(BertConfig(**cfg['model']))),
                    loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(cfg['epochs'], cfg['lr'])
    acc_dense = float(learn.validate()[1])
    dense = deepcopy(learn.model).eval()
    cb = SparsifyCallback(cfg['sparsity'], cfg['granularity'], 'local', large_final, globals()[cfg['schedule']],
                          end_epoch=cfg['end_epoch'])
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(cfg['prune_epochs'], cfg['prune_lr'], cbs=cb)
    acc_masked = float(learn.validate()[1])
    masked = deepcopy(learn.model).eval()
    learn.compact()
    acc_compact = float(learn.validate()[1])
    small = learn.model.eval()
    x = dls.valid.one_batch()[0][:cfg['batch']].cpu()
    with torch.inference_mode(): diff = float((masked(x) - small(x)).abs().max())
    s = _common.latency(dict(dense=dense, masked=masked, compact=small), x, cfg['runs'], cfg['warmup'])
    ms = {k: 1e3*v for k, v in s.items()}
    enc = lambda m: n_params(m, '.encoder.')
    att = small.m.bert.encoder.layer
    return dict(acc_dense=acc_dense, acc_masked=acc_masked, acc_compact=acc_compact, max_diff=diff,
                params=n_params(masked), params_compact=n_params(small), encoder=enc(masked), encoder_compact=enc(small),
                heads=[l.attention.self.num_attention_heads for l in att],
                intermediate=[l.intermediate.dense.out_features for l in att],
                ms_dense=ms['dense'], ms_masked=ms['masked'], ms_compact=ms['compact'], speedup=ms['masked']/ms['compact'])

def md(r, cfg)->str:
    return f"""BERT-style classifier ({cfg['model']['num_hidden_layers']} layers, hidden {cfg['model']['hidden_size']}, {cfg['model']['num_attention_heads']} heads, MLP {cfg['model']['intermediate_size']}), `SparsifyCallback({cfg['sparsity']}, '{cfg['granularity']}', schedule={cfg['schedule']})`, then `learn.compact()`; latency at batch {cfg['batch']} x {cfg['seq']} tokens, 1 thread, timed alternately.

| model | accuracy | parameters | encoder parameters | heads per layer | MLP width | ms per batch |
|---|---|---|---|---|---|---|
| dense | {r['acc_dense']:.4f} | {r['params']:,} | {r['encoder']:,} | {cfg['model']['num_attention_heads']} | {cfg['model']['intermediate_size']} | {r['ms_dense']:.2f} |
| masked ({cfg['sparsity']} %) | {r['acc_masked']:.4f} | {r['params']:,} | {r['encoder']:,} | {cfg['model']['num_attention_heads']} | {cfg['model']['intermediate_size']} | {r['ms_masked']:.2f} |
| compacted | {r['acc_compact']:.4f} | {r['params_compact']:,} | {r['encoder_compact']:,} | {r['heads']} | {r['intermediate']} | {r['ms_compact']:.2f} |

Encoder kept: {r['encoder_compact']/r['encoder']:.3f}x; speed-up of the compacted model over the masked one: {r['speedup']:.2f}x; largest output difference (compacted vs masked): {r['max_diff']:.2e}.
"""

if __name__ == '__main__':
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = run()
    p = _common.write_results('hf_bert', CONFIG, r, md(r, CONFIG), __file__, time.time() - t0)
    print((p.with_suffix('.md')).read_text())
