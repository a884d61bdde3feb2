"Integration and fault cases of SparsifyCallback with what fastai users combine it with"
import warnings, pickle
from functools import partial
import pytest, torch
from torch import nn
from fastai.basics import *
from fastai.callback.all import *
from fasterprune.all import *
from fasterprune.demo import digits_learner, digits_cnn, digits_mlp

def n_zeros(t): return int((t == 0).sum())
def layers(model): return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]   # all but output

def assert_exact(model, pct):
    for l in layers(model): assert n_zeros(l.weight) == round(pct/100*l.weight.numel()), l

def fit(learn, *args, **kwargs):
    with learn.no_bar(), learn.no_logging(): getattr(learn, kwargs.pop('how', 'fit'))(*args, **kwargs)

@pytest.mark.parametrize('kw', [
    dict(schedule=one_shot, start_epoch=4), dict(schedule=iterative, start_epoch=2), dict(schedule=sched_agp, start_epoch=2),
    dict(schedule=sched_onecycle), dict(schedule=sched_cos, end_epoch=7), dict(schedule=sched_exp, start_sparsity=0.0001)])
def test_study_calls_as_written_10_epochs(kw):
    "The study's calls, with learn.fit(10, 1e-3), end at exactly 95 %"
    learn = digits_learner()
    sched = kw.pop('schedule')
    fit(learn, 10, 1e-3, cbs=SparsifyCallback(95, 'weight', 'local', large_final, sched, **kw))
    assert_exact(learn.model, 95)

def test_small_mlp_global():
    learn = digits_learner(digits_mlp())
    fit(learn, 3, 1e-2, cbs=SparsifyCallback(80, 'weight', 'global', large_final, sched_agp))
    ls = layers(learn.model)
    assert sum(n_zeros(l.weight) for l in ls) == round(.8*sum(l.weight.numel() for l in ls))
    assert all(n_zeros(l.weight) < l.weight.numel() for l in ls)

@pytest.mark.parametrize('mode', ['fp16', 'bf16'])
def test_mixed_precision(mode):
    learn = digits_learner()
    learn = learn.to_fp16() if mode == 'fp16' else learn.to_bf16()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # CPU: torch disables CUDA autocast with a warning
        fit(learn, 2, 1e-2, cbs=SparsifyCallback(90, schedule=sched_agp))
    assert_exact(learn.model, 90)

def test_gradient_accumulation_reaches_target():
    "Steps skipped by GradientAccumulation (including the last) do not stop the final sparsity"
    learn = digits_learner()
    fit(learn, 2, 1e-2, cbs=[GradientAccumulation(64*3), SparsifyCallback(90, schedule=sched_onecycle)])
    assert_exact(learn.model, 90)

def test_snip_momentum_with_gradient_accumulation():
    learn = digits_learner()
    fit(learn, 2, 1e-2, cbs=[GradientAccumulation(128), SparsifyCallback(90, criteria=snip_momentum, schedule=sched_agp)])
    assert_exact(learn.model, 90)

def test_fine_tune_with_frozen_body():
    "fine_tune's frozen stage waits; the unfrozen stage prunes to the target"
    learn = digits_learner(splitter=lambda m: [params(m[:-1]), params(m[-1])])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        fit(learn, 2, 1e-2, how='fine_tune', cbs=SparsifyCallback(90, schedule=sched_cos))
    assert any('frozen' in str(x.message) for x in w)
    assert_exact(learn.model, 90)

def test_fine_tune_without_splitter_prunes_in_its_first_fit():
    "With nothing frozen (one parameter group), fine_tune's first fit trains every layer: the schedule runs there, the second fit holds"
    learn = digits_learner()
    cb = SparsifyCallback(90, schedule=sched_cos)
    fit(learn, 2, 1e-2, how='fine_tune', cbs=cb)
    assert_exact(learn.model, 90)
    assert cb.offset == 0 and cb.completed and cb.history[0][2] == pytest.approx(90, abs=.01)   # the second fit held it

def test_save_load_mid_training_resumes_to_same_masks(tmp_path):
    "A run interrupted after epoch 3 and resumed from its checkpoint ends with the masks of the uninterrupted run"
    def run(resume):
        learn = digits_learner(path=tmp_path, cbs=SparsifyCallback(90, schedule=sched_agp, end_epoch=5))
        learn.dls.train.shuffle = False          # the same batches in both runs, so only the resume can differ
        if not resume:
            fit(learn, 6, 1e-2, how='fit_one_cycle'); return learn
        fit(learn, 6, 1e-2, how='fit_one_cycle', cbs=[SaveModelCallback(every_epoch=True, fname='ck', with_opt=True),
                                                      CancelAfter(3)])
        learn2 = digits_learner(path=tmp_path, cbs=SparsifyCallback(90, schedule=sched_agp, end_epoch=5))
        learn2.dls.train.shuffle = False
        learn2.load_pruned('ck_2')
        assert any(k.endswith('weight_mask') for k in learn2.model.state_dict())
        fit(learn2, 6, 1e-2, how='fit_one_cycle', start_epoch=3)
        return learn2
    a, b = run(False), run(True)
    for la, lb in zip(layers(a.model), layers(b.model)):
        assert torch.equal(la.weight == 0, lb.weight == 0)
    assert_exact(b.model, 90)

class CancelAfter(Callback):
    "Simulates an interruption after `n` epochs"
    order = 99
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch + 1 >= self.n: raise CancelFitException()

def test_cancelled_fit_does_not_force_target():
    learn = digits_learner()
    fit(learn, 4, 1e-2, cbs=[SparsifyCallback(90, schedule=sched_lin), CancelAfter(2)])
    z = n_zeros(learn.model[3].weight) / learn.model[3].weight.numel()
    assert 0.3 < z < 0.7

def test_export_and_load_learner(tmp_path):
    learn = digits_learner(path=tmp_path, cbs=SparsifyCallback(90, schedule=sched_agp))
    fit(learn, 2, 1e-2)
    learn.export('pruned.pkl')
    learn2 = load_learner(tmp_path/'pruned.pkl')
    assert_exact(learn2.model, 90)
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(learn.model.eval()(x), learn2.model.eval()(x))

def test_keep_masks_then_make_permanent():
    "keep_masks leaves the masks for more fine-tuning with the same callback; make_permanent then removes them"
    learn = digits_learner()
    cb = SparsifyCallback(90, schedule=sched_agp, keep_masks=True)
    fit(learn, 2, 1e-2, cbs=cb)
    assert any(k.endswith('weight_mask') for k in learn.model.state_dict())
    before = learn.model[3].weight == 0
    fit(learn, 1, 1e-2, cbs=cb)           # the same callback again: holds the final sparsity, masks unchanged
    assert torch.equal(before, learn.model[3].weight == 0)
    make_permanent(learn.model)
    assert not any('mask' in k or 'pruned' in k for k in learn.model.state_dict())
    assert all(len(m._load_state_dict_pre_hooks) == 0 for m in learn.model.modules())
    assert_exact(learn.model, 90)

class MaskSpy(Callback):
    "Records layer '3's mask after every optimizer step from epoch 1 on"
    order = SparsifyCallback.order + 1
    def __init__(self): self.seen = []
    def after_step(self):
        if self.epoch >= 1: self.seen.append(self.learn.sparsify.sparsifier.layers['3'].weight_mask.clone())

def test_mask_update_window_lets_weights_come_back():
    "With mask_end_epoch after the ramp, masks keep changing at constant sparsity and masked weights can return"
    learn, spy = digits_learner(), MaskSpy()
    fit(learn, 4, 3e-2, cbs=[SparsifyCallback(80, schedule=one_shot, end_epoch=1, mask_end_epoch=4, prune_every=5), spy])
    seen = spy.seen
    revived = any(bool((~a & b).any()) for a, b in zip(seen, seen[1:]))
    assert revived, 'no masked weight ever came back'
    assert_exact(learn.model, 80)

def test_masks_frozen_after_ramp_by_default():
    learn, spy = digits_learner(), MaskSpy()
    fit(learn, 3, 3e-2, cbs=[SparsifyCallback(80, schedule=one_shot, end_epoch=1, keep_masks=True), spy])
    assert len(spy.seen) > 1 and all(torch.equal(spy.seen[0], s) for s in spy.seen)

def test_with_save_model_callback_reloading_best(tmp_path):
    "SaveModelCallback's end-of-fit reload works (masks kept, with a warning); make_permanent then finishes"
    learn = digits_learner(path=tmp_path)
    with pytest.warns(UserWarning, match='make_permanent'):
        fit(learn, 3, 1e-2, cbs=[SparsifyCallback(90, schedule=sched_agp, end_epoch=1), SaveModelCallback()])
    make_permanent(learn.model)
    assert not any('mask' in k or 'pruned' in k for k in learn.model.state_dict())
    assert_exact(learn.model, 90)     # every epoch after end_epoch 1 is at the target, so is the best one


# ---------------------------------------------------------------------------------------------- any DataLoaders (issue 23)
from torch.utils.data import DataLoader as TorchDL, TensorDataset
from fasterprune.demo import digits_data
from fasterprune.fitting import example_batch, batch_inputs

class DictInput(nn.Module):
    "The digits CNN taking its image from a dict {'img': x}, as models fed by tokenizers take theirs"
    def __init__(self): super().__init__(); self.body = digits_cnn()
    def forward(self, d): return self.body(d['img'])

def _dls(kind):
    "Digits through plain PyTorch DataLoaders, fastai DataLoaders over lists, or batches ({'img': x}, y)"
    (xt, yt), (xv, yv) = digits_data()
    if kind == 'torch': return DataLoaders(TorchDL(TensorDataset(xt, yt), 64, shuffle=True), TorchDL(TensorDataset(xv, yv), 64))
    if kind == 'list': return DataLoaders(DataLoader(list(zip(xt, yt)), 64, shuffle=True), DataLoader(list(zip(xv, yv)), 64))
    dicts = lambda x, y: [({'img': a}, b) for a, b in zip(x, y)]
    return DataLoaders(TorchDL(dicts(xt, yt), 64, shuffle=True), TorchDL(dicts(xv, yv), 64))

@pytest.mark.parametrize('g', ['filter', 'coupled'])
@pytest.mark.parametrize('kind', ['torch', 'list', 'dict'])
def test_channel_granularities_with_any_dataloaders(kind, g):
    "'filter' and 'coupled' trace the model on the first training batch, whatever DataLoaders the Learner has"
    set_seed(0)
    learn = Learner(_dls(kind), DictInput() if kind == 'dict' else digits_cnn(), loss_func=CrossEntropyLossFlat())
    cb = SparsifyCallback(50, g, schedule=one_shot)
    fit(learn, 1, 1e-2, cbs=cb)
    convs = [m for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    assert all(int((c.weight.flatten(1) == 0).all(1).sum()) == c.out_channels//2 for c in convs)
    if g == 'filter': assert len(cb.sparsifier._bn) == 3      # the BatchNorm after each pruned conv, found by tracing

def test_example_batch_rule():
    "Inputs: all but the last element (fastai's rule), the first `n_inp` of fastai's Datasets, a dict as it is"
    assert [t.shape for t in example_batch(_dls('torch'))] == [torch.Size([64, 1, 8, 8])]
    assert set(example_batch(_dls('dict'))[0]) == {'img'}
    assert example_batch(digits_learner().dls)[0].shape == (64, 1, 8, 8)
    assert batch_inputs({'a': 1}) == {'a': 1} and batch_inputs((1, 2, 3)) == (1, 2) and batch_inputs((1, 2, 3), 1) == (1,)
    assert batch_inputs([5]) == (5,)

def test_dict_batch_is_traced_as_keyword_arguments():
    "A batch that is a dict is passed as keyword arguments: model(**batch), as models fed by tokenizers take it"
    class KW(nn.Module):
        def __init__(self): super().__init__(); self.body = digits_cnn()
        def forward(self, img, label=None): return self.body(img)
    xs = batch_inputs({'img': torch.randn(4, 1, 8, 8), 'label': torch.zeros(4)})
    assert len(Sparsifier(KW(), 'coupled', example_inputs=xs).groups) == 3
    assert len(Sparsifier(KW(), 'filter', example_inputs=xs)._bn) == 3

def test_example_inputs_given_by_the_user():
    "`example_inputs=` is what the channels are traced with (no batch is drawn from the data)"
    learn, seen = Learner(_dls('torch'), digits_cnn(), loss_func=CrossEntropyLossFlat()), []
    cb = SparsifyCallback(50, 'coupled', schedule=one_shot, example_inputs=torch.randn(2, 1, 8, 8))
    import fasterprune.callback as fc
    orig, fc.example_batch = fc.example_batch, lambda *a: seen.append(1)
    try: fit(learn, 1, 1e-2, cbs=cb)
    finally: fc.example_batch = orig
    assert not seen and cb.sparsifier.groups


def test_tracing_batch_leaves_the_shuffle_alone():
    "Taking the batch that traces channels ('filter', 'coupled', 'head') does not change the order a seeded fit sees"
    from fastai.basics import set_seed, DataLoaders
    from fasterprune.fitting import example_batch
    from fasterprune.demo import digits_dls
    def first_batch(trace):
        set_seed(0, reproducible=True)
        dls = digits_dls(bs=16)
        if trace: example_batch(dls)
        return next(iter(dls.train))[1]
    assert torch.equal(first_batch(False), first_batch(True))
    def first_torch(trace):
        torch.manual_seed(0)
        dl = torch.utils.data.DataLoader(list(range(64)), batch_size=8, shuffle=True)
        dls = DataLoaders(dl, dl)
        if trace: example_batch(dls)
        return next(iter(dl))
    assert torch.equal(first_torch(False), first_torch(True))
