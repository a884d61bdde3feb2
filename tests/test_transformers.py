"""Transformers and recurrent models as first-class models: GPT-2's transposed `Conv1D`, MultiheadAttention's packed
`in_proj_weight`, LSTM/GRU weights (also behind fastai's WeightDropout), embeddings and tied weights, in the
`Sparsifier`, the callback, reports and sparse checkpoints. Hugging Face models are built from small configs
(random weights; nothing downloads); transformers is an optional extra, so these tests skip without it."""

import warnings

import pytest
import torch
from torch import nn
from fastai.basics import Learner, DataLoaders, CrossEntropyLossFlat
from fastai.data.core import TfmdDL
from fasterprune.all import *

transformers = pytest.importorskip("transformers")
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification,
                          GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          RobertaConfig, RobertaForSequenceClassification)
from transformers.pytorch_utils import Conv1D

V, T = 64, 12   # vocabulary and sequence length of the toy data


def gpt2(**kw):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                      bos_token_id=0, eos_token_id=0, **kw))


def hf_models():
    "name -> (model, causal LM?) of each family, hidden 32, 2 layers, 4 heads"
    small = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64, pad_token_id=0)
    return {
        'gpt2': (lambda: gpt2(), True),
        'bert': (lambda: BertForSequenceClassification(BertConfig(**small, num_labels=2)), False),
        'roberta': (lambda: RobertaForSequenceClassification(RobertaConfig(**small, num_labels=2)), False),
        'distilbert': (lambda: DistilBertForSequenceClassification(DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4,
                        hidden_dim=64, max_position_embeddings=64, pad_token_id=0, num_labels=2)), False),
        'llama': (lambda: LlamaForCausalLM(LlamaConfig(**small, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)), True),
        'qwen2': (lambda: Qwen2ForCausalLM(Qwen2Config(**small, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)), True),
    }


class Logits(nn.Module):
    "A Hugging Face model as fastai expects it: token ids in, logits out"
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m(input_ids=x).logits


def learner(m, causal):
    "A Learner on random tokens: next-token prediction for a causal LM, two classes otherwise"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(3, V, (64, T), generator=g)
    y = x.roll(-1, 1) if causal else (x[:, 0] > V//2).long()
    ds = list(zip(x, y))
    dls = DataLoaders(TfmdDL(ds[:48], bs=16, shuffle=True), TfmdDL(ds[48:], bs=16))
    return Learner(dls, Logits(m), loss_func=CrossEntropyLossFlat())


def exact(report, target):
    "The report's total holds exactly round(target % of its weights) zeros (a weight that is zero anyway counts too)"
    t = report.iloc[-1]
    return t['zeros'] == round(target/100*t['params'])


@pytest.mark.parametrize("name", list(hf_models()))
def test_hf_global_fit_is_exact(name):
    "Every family's fit ends at exactly the target; GPT-2's Conv1D layers are selected, the tied lm_head is not"
    make, causal = hf_models()[name]
    learn = learner(make(), causal)
    cb = SparsifyCallback(80, 'weight', 'global', large_final, sched_cos)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        learn.fit(1, 1e-3, cbs=cb)
    r = cb.sparsifier.report()
    assert exact(r, 80), r.tail(2)
    if name == 'gpt2':
        assert set(r.type[:-1]) == {'Conv1D'} and len(r) - 1 == 8


def linear_twin(c: Conv1D) -> nn.Linear:
    "An nn.Linear computing the same as Conv1D `c` (weight transposed)"
    l = nn.Linear(c.weight.shape[0], c.weight.shape[1])
    with torch.no_grad(): l.weight.copy_(c.weight.T); l.bias.copy_(c.bias)
    return l


@pytest.mark.parametrize("g", ['weight', 'row', 'column', 'filter', 'block4', '2:4'])
@pytest.mark.parametrize("crit", ['large_final', 'movement', 'snip', 'taylor'])
def test_conv1d_masks_are_the_linear_masks(g, crit):
    "A Conv1D is pruned exactly as the nn.Linear that computes the same: masks equal up to the transpose"
    torch.manual_seed(1)
    c = nn.Sequential(Conv1D(24, 16), nn.ReLU(), Conv1D(8, 24))
    l = nn.Sequential(linear_twin(c[0]), nn.ReLU(), linear_twin(c[2]))
    x = torch.randn(5, 16)
    outs = []
    for m in (c, l):
        sp = Sparsifier(m, g, 'local', criteria=crit)
        sp.attach()
        sp.criteria.reset(sp.layers)                  # one training step: weights move, gradients exist
        m(x).pow(2).sum().backward()
        with torch.no_grad():
            for p in m.parameters(): p.sub_(.1*p.grad)
        sp.criteria.update(sp.layers)
        sp.prune(50)
        outs.append(m(x))
    assert torch.equal(c[0].weight_mask.T, l[0].weight_mask)
    torch.testing.assert_close(outs[0], outs[1])


def test_register_transposed():
    "A user's own (in, out) layer type is pruned like a Linear once registered, and not before"
    class MyConv1D(nn.Module):
        def __init__(self, nf, nx): super().__init__(); self.weight = nn.Parameter(torch.randn(nx, nf))
        def forward(self, x): return x @ self.weight
    m = nn.Sequential(MyConv1D(12, 8), nn.Linear(12, 2))
    with pytest.raises(ValueError, match="No layer selected"): Sparsifier(m)
    register_transposed(MyConv1D)
    try:
        sp = Sparsifier(m, 'row')
        sp.prune(25)
        assert int(m[0].weight_mask.all(0).sum()) == 9        # 3 of the 12 outputs (columns of the stored weight) pruned
    finally:
        from fasterprune import layers; layers._registered.remove(MyConv1D)


def test_tied_embedding_has_one_mask_and_stays_tied():
    "GPT-2's wte and lm_head share one tensor: one mask, counted once, tied after make_permanent and a sparse checkpoint"
    m = gpt2()
    sp = Sparsifier(m, 'weight', 'global', layer_types=(nn.Embedding, nn.Linear, Conv1D), prune_output=True)
    assert sp.tied == {'lm_head': 'transformer.wte'} and 'lm_head' not in sp.layers
    sp.prune(60)
    r = sp.report()
    assert r.iloc[-1]['params'] == sum(l.weight.numel() for l in sp.layers.values())
    assert list(r.name).count('lm_head') == 0 and exact(r, 60)
    assert not hasattr(m.lm_head, 'weight_mask')
    sp.detach()
    make_permanent(m)
    assert m.lm_head.weight is m.transformer.wte.weight
    full = sparsity_report(m, unprunable=True)
    assert full.iloc[-1]['params'] == sum(p.numel() for p in m.parameters() if p.dim() > 1)   # the tied tensor once


def test_sparse_checkpoint_of_gpt2(tmp_path):
    "A pruned GPT-2 round-trips exactly through save_sparse/load_sparse, and its Conv1D weights are stored sparse"
    m = gpt2()
    sp = Sparsifier(m, 'weight', 'local')
    sp.prune(90); sp.detach()
    p = save_sparse(m, tmp_path/'g.safetensors')
    m2 = gpt2()
    load_sparse(m2, p)
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()): assert torch.equal(a, b), k
    x = torch.randint(0, V, (2, T))
    m.eval(); m2.eval()
    assert torch.equal(m(input_ids=x).logits, m2(input_ids=x).logits)


def test_multihead_attention_in_proj():
    "nn.TransformerEncoder: in_proj_weight is a layer of its own; masks survive a state_dict round trip; a fit is exact"
    torch.manual_seed(0)
    def enc(): return nn.Sequential(nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2),
                                    nn.Flatten(), nn.Linear(16*4, 3))
    m = enc()
    sp = Sparsifier(m, 'weight', 'local')
    assert '0.layers.0.self_attn.in_proj_weight' in sp.layers
    sp.prune(70)
    w = m[0].layers[1].self_attn.in_proj_weight
    assert int((w == 0).sum()) == round(.7*w.numel())
    sd = m.state_dict()
    assert '0.layers.1.self_attn.in_proj_weight_mask' in sd
    m2 = enc(); Sparsifier(m2, 'weight', 'local').attach(); m2.load_state_dict(sd)
    assert torch.equal(m2[0].layers[1].self_attn.in_proj_weight_mask, w != 0)
    x = torch.randn(96, 4, 16); y = torch.randint(0, 3, (96,))
    ds = list(zip(x, y))
    learn = Learner(DataLoaders(TfmdDL(ds[:64], bs=16, shuffle=True), TfmdDL(ds[64:], bs=16)), enc(), loss_func=CrossEntropyLossFlat())
    cb = SparsifyCallback(75, 'row', 'local', large_final, sched_cos)
    learn.fit(1, 1e-3, cbs=cb)
    for n, l in cb.sparsifier.layers.items():
        rows = out_in(l, l.weight).shape[0]
        assert int((l.weight == 0).all(1).sum()) == round(.75*rows), n


def awd_classifier():
    from fastai.text.all import get_text_classifier, AWD_LSTM, awd_lstm_clas_config
    torch.manual_seed(0)
    return get_text_classifier(AWD_LSTM, 200, 2, config=dict(awd_lstm_clas_config, emb_sz=40, n_hid=64))


def test_awd_lstm_covers_the_recurrent_weights(tmp_path):
    "A global prune of fastai's AWD-LSTM classifier covers its LSTM weights (behind WeightDropout too); the file shrinks"
    m = awd_classifier()
    sp = Sparsifier(m, 'weight', 'global')
    names = list(sp.layers)
    assert sum('weight_hh_l0_raw' in n for n in names) == 3 and sum(n.endswith('weight_ih_l0') for n in names) == 3
    matrices = sum(p.numel() for p in m.parameters() if p.dim() > 1)
    covered = sum(l.weight.numel() for l in sp.layers.values())
    emb = m[0].module.encoder.weight.numel()
    assert covered >= .95*(matrices - emb) - 100       # all but the embedding and the 2x50 output layer
    sp.prune(90)
    assert exact(sp.report(), 90)
    m.train(); m(torch.randint(0, 200, (2, 30)))           # WeightDropout's forward reads the masked raw weights
    sp.detach()
    dense, sparse = tmp_path/'d.pt', tmp_path/'s.safetensors'
    torch.save(m.state_dict(), dense); save_sparse(m, sparse)
    assert sparse.stat().st_size < .6*dense.stat().st_size


def test_recurrent_layers_and_embeddings():
    "nn.GRU/nn.LSTM weights are pruned by default; nn.Embedding only when named in layer_types"
    torch.manual_seed(0)
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.gru, self.lstm, self.out = nn.Embedding(50, 8), nn.GRU(8, 12), nn.LSTM(12, 6, bidirectional=True), nn.Linear(12, 2)
        def forward(self, x): return self.out(self.lstm(self.gru(self.emb(x))[0])[0])
    m = M()
    assert [n for n in Sparsifier(m).layers] == ['gru.weight_ih_l0', 'gru.weight_hh_l0', 'lstm.weight_ih_l0', 'lstm.weight_hh_l0',
                                                 'lstm.weight_ih_l0_reverse', 'lstm.weight_hh_l0_reverse']
    sp = Sparsifier(m, 'row', 'global', layer_types=(nn.Embedding, nn.RNNBase))
    assert 'emb' in sp.layers
    sp.prune(50)
    assert m.emb.weight_mask.all(1).sum() + sum(int(l.weight_mask.all(1).sum()) for n, l in sp.layers.items() if n != 'emb') \
        == round(.5*sum(out_in(l, l.weight).shape[0] for l in sp.layers.values()))
    m(torch.randint(0, 50, (5, 3)))
    with pytest.raises(ValueError, match="layer_types must be"): Sparsifier(m, layer_types=(nn.LayerNorm,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_packed_recurrent_and_conv1d():
    "On a GPU (cuDNN's packed LSTM weights included) masks are exact, survive optimizer steps and match the CPU's"
    torch.manual_seed(0)
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.att = Conv1D(32, 16), nn.MultiheadAttention(32, 4, batch_first=True)
            self.lstm, self.out = nn.LSTM(32, 24, num_layers=2), nn.Linear(24, 3)
        def forward(self, x):
            h = self.c(x); h = self.att(h, h, h)[0]
            return self.out(self.lstm(h)[0])
    cpu = M(); gpu = M().cuda(); gpu.load_state_dict(cpu.state_dict())
    sps = [Sparsifier(m, 'weight', 'global') for m in (cpu, gpu)]
    for sp in sps: sp.prune(70)
    for (n, a), b in zip(sps[0].layers.items(), sps[1].layers.values()): assert torch.equal(a.weight_mask, b.weight_mask.cpu()), n
    opt = torch.optim.AdamW(gpu.parameters(), 1e-2)
    for _ in range(3):
        gpu(torch.randn(4, 5, 16, device='cuda')).sum().backward(); opt.step(); opt.zero_grad(); sps[1].apply_masks()
    r = sps[1].report()
    assert exact(r, 70), r
