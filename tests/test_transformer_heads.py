"""'coupled' on Hugging Face transformers: whole attention heads (grouped-query attention included) and MLP channels are
pruned, compacted with their head counts written back, and the compacted model gives the masked model's outputs,
generates its greedy tokens and reloads in a fresh process. Models are built from configs (random weights)."""
import os, subprocess, sys, warnings
import pytest, torch
from torch import nn
from fasterprune.all import *


from torchvision_ops import declare_torchvision_ops
declare_torchvision_ops()   # also when a fresh process imports this module (conftest does not run there)
T = pytest.importorskip('transformers')

class Logits(nn.Module):
    "The model as a fastai Learner holds it: tensors in, logits out"
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x):
        return (self.m(pixel_values=x) if x.is_floating_point() else self.m(input_ids=x)).logits

def build(name):
    torch.manual_seed(0)
    small = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4)
    lm = dict(vocab_size=1000, intermediate_size=256, num_key_value_heads=2, **small)
    m = {'bert': lambda: T.BertForSequenceClassification(T.BertConfig(vocab_size=1000, intermediate_size=512, num_labels=2, **small)),
         'roberta': lambda: T.RobertaForSequenceClassification(T.RobertaConfig(vocab_size=1000, intermediate_size=256, **small)),
         'distilbert': lambda: T.DistilBertForSequenceClassification(T.DistilBertConfig(vocab_size=1000, dim=128, n_layers=2, n_heads=4, hidden_dim=256)),
         'llama': lambda: T.LlamaForCausalLM(T.LlamaConfig(**lm)),
         'qwen2': lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**lm)),
         'gpt2': lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=1000, n_embd=128, n_layer=2, n_head=4)),
         'vit': lambda: T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, intermediate_size=256, num_labels=3, **small)),
        }[name]()
    x = torch.randn(2, 3, 32, 32) if name == 'vit' else torch.randint(0, 1000, (2, 12))
    return Logits(m).eval(), x

def n_params(m, part=''): return sum(p.numel() for n, p in m.named_parameters() if part in n)

def pruned(name):
    w, x = build(name)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')            # the residual stream stays dense (LayerNorm/RMSNorm): said in a warning
        sp = Sparsifier(w, 'coupled', example_inputs=x); sp.prune(50); sp.detach()
    return w, x

def compacted(w, x):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); return compact(w, x)

def assert_close(a, b, rel=1e-4): assert a.shape == b.shape and float((a - b).abs().max()) <= rel*float(b.abs().max())

def test_bert_goal():
    "The issue's goal: BERT (hidden 128, 2 layers, 4 heads) at 50 % 'coupled' keeps <= 0.55x of its encoder, same outputs"
    w, x = pruned('bert')
    small = compacted(w, x)
    assert n_params(small, 'encoder') <= .55*n_params(w, 'encoder')
    y = torch.randint(0, 1000, (3, 20))
    with torch.no_grad(): assert_close(small(x), w(x)); assert_close(small(y), w(y))
    heads = [a.n_heads for a in attention_modules(small)]
    assert heads == [2, 2] and small.m.config.num_attention_heads == 2
    r = compact_report(w, small, x).set_index('name')
    assert r.loc['m.bert.encoder.layer.0.attention.self.query', 'shape_after'] == (64, 128)
    assert r.loc['m.bert.encoder.layer.0.attention.output.dense', 'shape_after'] == (128, 64)

@pytest.mark.parametrize('name', ['roberta', 'distilbert', 'vit'])
def test_encoders_lose_half_their_heads(name):
    w, x = pruned(name)
    small = compacted(w, x)
    assert [a.n_heads for a in attention_modules(small)] == [2, 2]
    assert n_params(small, 'layer') <= .55*n_params(w, 'layer')
    with torch.no_grad(): assert_close(small(x), w(x))

def generate(m, ids): return m.generate(ids, max_new_tokens=10, do_sample=False, pad_token_id=0)

@pytest.mark.parametrize('name', ['llama', 'qwen2', 'gpt2'])
def test_decoders_generate_the_masked_models_tokens(name, tmp_path):
    w, x = pruned(name)
    small = compacted(w, x)
    atts = attention_modules(small)
    if name == 'gpt2':
        assert [(a.n_heads, a.module.split_size) for a in atts] == [(2, 64), (2, 64)]
        assert small.m.lm_head.weight is small.m.transformer.wte.weight       # the tied embedding stays tied
    else:   # grouped-query attention: 2 kv heads -> 1, each with its 2 query heads
        assert [(a.n_heads, a.n_kv, a.module.num_key_value_groups) for a in atts] == [(2, 1, 2), (2, 1, 2)]
        assert (small.m.config.num_attention_heads, small.m.config.num_key_value_heads) == (2, 1)
    assert n_params(small, 'layers.' if name != 'gpt2' else '.h.') <= .55*n_params(w, 'layers.' if name != 'gpt2' else '.h.')
    with torch.no_grad(): assert_close(small(x), w(x))
    ids = torch.randint(0, 1000, (2, 6))
    tokens = generate(small.m, ids)
    assert torch.equal(tokens, generate(w.m, ids))
    # saved, then loaded in a fresh process: same logits
    torch.save({'model': small.m, 'ids': ids, 'logits': small.m(input_ids=ids).logits.detach()}, tmp_path/'m.pt')
    code = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
            "import test_transformer_heads as t, torch\n"
            f"d = torch.load({str(tmp_path/'m.pt')!r}, weights_only=False)\n"
            "with torch.no_grad(): y = d['model'](input_ids=d['ids']).logits\n"
            "assert torch.allclose(y, d['logits'], atol=1e-5), float((y - d['logits']).abs().max())\n")
    if name == 'llama':   # even pruning: the config holds the head counts, so save_pretrained / from_pretrained work too
        small.m.save_pretrained(tmp_path/'hf')
        code += (f"m = t.T.LlamaForCausalLM.from_pretrained({str(tmp_path/'hf')!r}).eval()\n"
                 "with torch.no_grad(): assert torch.allclose(m(input_ids=d['ids']).logits, d['logits'], atol=1e-5)\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

def test_gqa_heads_move_with_their_kv_head():
    "Under grouped-query attention a structure is a key/value head with its query heads: 2 structures per layer here"
    w, x = build('llama')
    hg = [g for g in channel_groups(w, x) if isinstance(g, HeadGroup)]
    assert [g.n for g in hg] == [2, 2]
    q = dict((n, root) for n, _, _, root in hg[0].producers)['m.model.layers.0.self_attn.q_proj']
    assert q.tolist() == [0]*64 + [1]*64          # query heads 0, 1 (32 rows each) with kv head 0

@pytest.mark.parametrize('name', ['bert', 'llama'])
def test_head_granularity(name):
    "'head': whole heads (a kv head with its query heads under GQA) scored, masked and removed; the MLP stays as it was"
    w, x = build(name)
    before = {n: p.detach().clone() for n, p in w.named_parameters() if 'mlp' in n or 'intermediate' in n}
    sp = Sparsifier(w, 'head', example_inputs=x); sp.prune(50); sp.detach()
    for n, p in w.named_parameters():
        if n in before: assert torch.equal(p, before[n]), n
    small = compacted(w, x)
    atts = attention_modules(small)
    assert [(a.n_heads, a.n_kv) for a in atts] == ([(2, 2)]*2 if name == 'bert' else [(2, 1)]*2)
    with torch.no_grad(): assert_close(small(x), w(x))
    q = atts[0].q[1]
    assert q.weight.shape[0] == 64 and small.m.config.num_attention_heads == 2

def test_head_granularity_global_prunes_unevenly():
    "'global' ranks the heads of all layers together: the config keeps its count when the layers differ, the modules hold theirs"
    w, x = build('bert')
    with torch.no_grad(): w.m.bert.encoder.layer[1].attention.self.query.weight.mul_(10)   # layer 1's heads score higher
    sp = Sparsifier(w, 'head', 'global', example_inputs=x); sp.prune(50); sp.detach()
    small = compacted(w, x)
    assert [a.n_heads for a in attention_modules(small)] == [1, 3]     # each layer keeps min_kept=1 head
    with torch.no_grad(): assert_close(small(x), w(x))
    assert small.m.config.num_attention_heads == 4

@pytest.mark.parametrize('gran', ['head', 'coupled'])
def test_timm_vit(gran):
    "timm's Attention (q|k|v packed in one Linear): heads go whole, `num_heads` and `attn_dim` follow"
    timm = pytest.importorskip('timm')
    torch.manual_seed(0)
    m = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore'); sp = Sparsifier(m, gran, example_inputs=x); sp.prune(50); sp.detach()
    small = compacted(m, x)
    assert [(a.n_heads, a.module.attn_dim) for a in attention_modules(small)] == [(1, 64), (1, 64)]   # 3 heads, 2 pruned
    with torch.no_grad(): assert_close(small(x), m(x))

def test_vit_reloads_in_a_fresh_process(tmp_path):
    w, x = pruned('vit')
    small = compacted(w, x)
    small.m.save_pretrained(tmp_path/'hf')             # even pruning, head size in the config: from_pretrained rebuilds it
    with torch.no_grad(): y = small(x)
    torch.save({'x': x, 'y': y}, tmp_path/'xy.pt')
    code = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
            "import test_transformer_heads as t, torch\n"
            f"d = torch.load({str(tmp_path/'xy.pt')!r})\n"
            f"m = t.T.ViTForImageClassification.from_pretrained({str(tmp_path/'hf')!r}).eval()\n"
            "with torch.no_grad(): assert torch.allclose(m(pixel_values=d['x']).logits, d['y'], atol=1e-5)\n")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

def test_head_granularity_errors_name_the_cause():
    w, x = build('bert')
    sd = {k: v.clone() for k, v in w.state_dict().items()}
    with pytest.raises(ValueError, match='no attention module has its query'):
        Sparsifier(w, 'head', exclude='*attention*', example_inputs=x)
    with pytest.raises(ValueError, match='needs attention modules'):
        Sparsifier(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), 'head', example_inputs=torch.randn(2, 4))
    for k, v in w.state_dict().items(): assert torch.equal(v, sd[k]), k

def test_head_pruning_in_a_fastai_fit():
    "SparsifyCallback(50, 'head') in a fit (it traces a training batch), then Learner.compact: half the heads go, training goes on"
    from fastai.basics import DataLoaders, Learner, CrossEntropyLossFlat
    w, _ = build('bert')
    X, y = torch.randint(0, 1000, (64, 12)), torch.randint(0, 2, (64,))
    dls = DataLoaders.from_dsets(list(zip(X, y)), list(zip(X[:16], y[:16])), bs=16)
    learn = Learner(dls, w.train(), loss_func=CrossEntropyLossFlat())
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-3, cbs=SparsifyCallback(50, 'head', schedule=sched_agp))
        learn.model.eval(); xb = X[:8]
        with torch.no_grad(): before = learn.model(xb)
        learn.compact(xb)
        assert [a.n_heads for a in attention_modules(learn.model)] == [2, 2]
        learn.model.eval()
        with torch.no_grad(): assert_close(learn.model(xb), before)
        learn.fit(1, 1e-3)


def test_multihead_attention_heads_are_masked_and_named_by_compact():
    "nn.MultiheadAttention: 'head' masks a head's q, k and v rows (and biases) together; compact keeps them and says why"
    torch.manual_seed(0)
    enc = nn.Sequential(nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2, enable_nested_tensor=False),
                        nn.Flatten(), nn.Linear(16*5, 3))
    x = torch.randn(2, 5, 16)
    sp = Sparsifier(enc, 'head', 'local', example_inputs=x)
    sp.prune(50)
    for l in enc[0].layers:
        a = l.self_attn
        alive = a.in_proj_weight_mask.any(1).view(3, 4, 4)          # (q|k|v, head, row of the head)
        assert (alive.all(2) == alive.any(2)).all()                  # a head's rows go together
        assert (alive.any(2) == alive[0].any(1)).all()               # q, k and v of one head together
        assert int(alive[0].any(1).sum()) == 2                       # exactly half of the heads
        assert float(a.in_proj_bias.detach().view(3, 4, 4)[~alive].abs().sum()) == 0
    sp.detach(); enc.eval()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        small = compact(enc, x)
    r = compact_report(enc, small, x).set_index('name')
    assert r.loc['0.layers.0.self_attn', 'dead_kept'] == 24 and 'MultiheadAttention' in r.loc['0.layers.0.self_attn', 'why_kept']
    with torch.no_grad(): assert torch.equal(small(x), enc(x))
