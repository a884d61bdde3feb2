"""Pruning models that are not the digits demo (issue 12): what is selected in a transformer, what is left out and said
so (MultiheadAttention's input projection, Embedding tables, other weights of 2+ dims), and the names fixed without
breaking old calls. Small digits fits (1 epoch)."""
import warnings
import pytest, torch
from torch import nn
from fastai.basics import *
from fasterprune.all import *
from fasterprune.demo import digits_learner
from fasterprune.sparsifier import _count_kinds


class DigitRows(nn.Module):
    "A 2-layer transformer over the 8 rows of a digit (tokens of 8 features), with a learned position table"
    def __init__(self, d=32):
        super().__init__()
        self.proj, self.pos = nn.Linear(8, d), nn.Embedding(8, d)
        layer = nn.TransformerEncoderLayer(d, 4, 2*d, dropout=0., batch_first=True)
        self.enc, self.head = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Linear(d, 10)
    def forward(self, x):
        t = self.proj(x.view(-1, 8, 8)) + self.pos.weight
        return self.head(self.enc(t).mean(1))


def fit(learn, *args, **kwargs):
    with learn.no_bar(), learn.no_logging(): learn.fit(*args, **kwargs)


def test_transformer_selection_and_what_is_left_out():
    m = DigitRows()
    sel = list(select_layers(m))
    assert 'proj' in sel and 'enc.layers.0.self_attn.out_proj' in sel and 'enc.layers.1.linear2' in sel
    assert 'enc.layers.0.self_attn.in_proj_weight' in sel and 'enc.layers.1.self_attn.in_proj_weight' in sel
    assert 'head' not in sel and 'pos' not in sel                # the output layer; a table unless named
    assert unprunable_weights(m) == {}
    assert list(select_layers(m, layer_types=(nn.Embedding,))) == ['pos']
    m.cls = nn.Parameter(torch.zeros(1, 32))                     # a raw parameter: nothing holds it
    assert _count_kinds(unprunable_weights(m)) == '1 DigitRows.cls'


def test_no_layer_selected_names_what_no_layer_type_holds():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with pytest.raises(ValueError, match=r"No layer selected.*1 embedding table\(s\) \('pos'\) are pruned only when named"):
            select_layers(DigitRows(), include='nothing')
    with pytest.raises(ValueError) as e: select_layers(nn.Linear(3, 2))
    assert 'no layer type holds' not in str(e.value)               # nothing left out: not said


def test_report_lists_left_out_weights_and_total_names_what_it_sums():
    learn = digits_learner(DigitRows)
    cb = SparsifyCallback(80, schedule=one_shot)
    fit(learn, 1, 1e-3, cbs=cb)
    r = cb.report().set_index('name')
    assert r.loc['enc.layers.0.self_attn.in_proj_weight', 'pruned'] == True
    assert abs(r.loc['enc.layers.0.self_attn.in_proj_weight', 'sparsity'] - 80) < .1
    assert r.loc['pos.weight', 'type'] == 'Embedding.weight' and r.loc['pos.weight', 'pruned'] == False
    assert r.loc['enc.layers.0.self_attn.out_proj', 'pruned'] == True
    assert abs(r.loc['enc.layers.0.self_attn.out_proj', 'sparsity'] - 80) < .1
    assert r.loc['total', 'type'] == f'sum of the {len(r) - 1} weights above'
    assert r.loc['total', 'params'] == sum(p.numel() for p in learn.model.parameters() if p.dim() > 1)
    t = sparsity_report(learn.model).set_index('name').loc['total', 'type']
    assert t.endswith('not counted: 1 Embedding.weight'), t


# ---------------------------------------------------------------------------------------------- names that mislead
def test_criterion_is_the_same_argument_as_criteria():
    assert SparsifyCallback(90, criterion='small_final').criteria.name == 'small_final'
    assert SparsifyCallback(90, 'weight', 'local', 'small_final').criteria.name == 'small_final'   # old positional call
    m = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    assert Sparsifier(m, criterion='small_final').criteria.name == 'small_final'
    with pytest.raises(TypeError, match='criterion'): SparsifyCallback(90, criteria='small_final', criterion='large_final')
    with pytest.raises(TypeError, match='criterion'): Sparsifier(m, criteria='small_final', criterion='large_final')


def test_target_is_the_target_and_realised_is_measured():
    learn = digits_learner()
    cb = SparsifyCallback(60, schedule=one_shot)
    assert cb.target == cb.sparsity == 60
    fit(learn, 1, 1e-2, cbs=cb)
    assert cb.target == 60 and abs(cb.realised - 60) < .1
