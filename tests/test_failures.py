"""Every failure path of SparsifyCallback (issue 13): bad input fails in the constructor or before training, naming the
argument, with the model untouched; a fit that stops early or fails leaves a documented state and says so; fine_tune,
checkpoints and the fresh-machine `make test` do what a user means. Small digits fits (1-3 epochs)."""
import math, os, shutil, subprocess, sys, warnings
from pathlib import Path
import pytest, torch
from torch import nn
from fastai.basics import *
from fastai.callback.all import *
from fasterprune.all import *
from fasterprune.demo import digits_learner, digits_cnn, digits_mlp

ROOT = Path(__file__).resolve().parent.parent
CONVS = ['0', '3', '6']                          # the digits CNN's selected layers; '11' is its output layer

def n_zeros(t): return int((t == 0).sum())
def fit(learn, *args, how='fit', **kwargs):
    with learn.no_bar(), learn.no_logging(): getattr(learn, how)(*args, **kwargs)
def snapshot(learn): return {k: v.detach().clone() for k, v in learn.model.named_parameters()}
def assert_params_equal(learn, before):
    now = dict(learn.model.named_parameters())
    assert now.keys() == before.keys()
    for k, v in before.items(): assert torch.equal(now[k].detach(), v), k
def assert_plain(learn):
    "No mask buffer, no load hook, no `sparsity` column left"
    assert not [k for k in learn.model.state_dict() if 'mask' in k or 'pruned' in k]
    assert all(len(m._load_state_dict_pre_hooks) == 0 for m in learn.model.modules())
    assert 'sparsity' not in [getattr(m, 'name', '') for m in learn.metrics]
def exact(learn, pct, names=CONVS):
    for n in names:
        w = learn.model.get_submodule(n).weight
        assert n_zeros(w) == round(pct/100*w.numel()), (n, n_zeros(w), w.numel())

class CancelAfter(Callback):
    "Raises CancelFitException after `n` epochs"
    order = 99
    def __init__(self, n): self.n = n
    def after_epoch(self):
        if self.epoch + 1 >= self.n: raise CancelFitException()

class Raise(Callback):
    "Raises `exc` at training batch `at` (counted over the fit) in event `event`, with order `order`"
    def __init__(self, exc, at, event='after_batch', order=0):
        self.exc, self.at, self.order, self.seen, self.per_batch = exc, at, order, 0, 'batch' in event or 'step' in event
        setattr(self, event, self._maybe)
    def _maybe(self):
        if self.per_batch and not self.training: return
        self.seen += 1
        if self.seen > self.at: raise self.exc

class MaskSpy(Callback):
    "The masks after our after_step, at every training batch"
    order = SparsifyCallback.order + 1
    def __init__(self): self.last = None
    def after_step(self):
        self.last = {n: l.weight_mask.clone() for n, l in self.learn.sparsify.sparsifier.layers.items()}

class NaNLoss(Callback):
    "Makes the loss NaN from training batch `at` on"
    order = -20
    def __init__(self, at): self.at, self.seen = at, 0
    def after_loss(self):
        if not self.training: return
        self.seen += 1
        if self.seen > self.at: self.learn.loss_grad = self.learn.loss_grad*float('nan'); self.learn.loss = self.learn.loss_grad.clone()


# ---------------------------------------------------------------------------------------------- 16: a fresh machine
def _dry_run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith('MAKE')}
    return subprocess.run(['make', '-n', *args], cwd=ROOT, capture_output=True, text=True, env=env).stdout

@pytest.mark.skipif(shutil.which('make') is None, reason='needs make')
def test_make_test_installs_chromium_when_missing():
    "`make test` installs Chromium (apt) when it is missing, and only then; .ci/run uses the same target"
    out = _dry_run('test', 'CHROMIUM=/nonexistent/chromium')
    assert 'apt-get install' in out and 'chromium' in out and 'fonts-liberation' in out, out
    assert 'apt-get' not in _dry_run('test', f'CHROMIUM={shutil.which("sh")}')
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'make chromium' in ci and 'apt-get' not in ci


# ---------------------------------------------------------------------------------------------- 9: the constructor
@pytest.mark.parametrize('v', [0.9, 0.5, 1e-3])
def test_fraction_of_one_warns(v):
    with pytest.warns(UserWarning, match=r'percentage.*pass'): SparsifyCallback(v)

def test_percentages_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for v in (0, 1, 50, 90, 100): SparsifyCallback(v)

@pytest.mark.parametrize('kw, arg', [
    (dict(keep_masks='no'), 'keep_masks'), (dict(keep_masks=1), 'keep_masks'), (dict(prune_output='yes'), 'prune_output'),
    (dict(min_kept=1.5), 'min_kept'), (dict(min_kept=True), 'min_kept'), (dict(min_kept=-1), 'min_kept'),
    (dict(layer_types=(nn.LayerNorm,)), 'layer_types'), (dict(layer_types='Linear'), 'layer_types'),
    (dict(include=3), 'include'), (dict(exclude=['0', 1]), 'exclude'),
    (dict(layer_sparsity=[('0', 50)]), 'layer_sparsity'), (dict(layer_sparsity={0: 50}), 'layer_sparsity'),
    (dict(layer_sparsity={'0': 150}), 'layer_sparsity'), (dict(layer_sparsity={'0': float('nan')}), 'layer_sparsity'),
    (dict(sparsity='90'), 'sparsity'), (dict(sparsity=float('nan')), 'sparsity'), (dict(sparsity=True), 'sparsity'),
    (dict(sparsity=120), 'sparsity'), (dict(start_sparsity=-5), 'start_sparsity'),
    (dict(start_epoch=-1), 'start_epoch'), (dict(end_epoch='end'), 'end_epoch'), (dict(mask_end_epoch=math.inf), 'mask_end_epoch'),
    (dict(prune_every=0), 'prune_every'), (dict(prune_every='batch'), 'prune_every'),
    (dict(context='everywhere'), 'context'), (dict(granularity='diagonal'), 'granularity'),
    (dict(criteria='largest'), 'criterion'), (dict(schedule='cosine'), 'schedule'),
    (dict(granularity='2:4', sparsity=75), 'sparsity'), (dict(granularity='2:4', sparsity=40), 'sparsity'),
    (dict(granularity='2:4', sparsity=50, layer_sparsity={'3': 60}), 'layer_sparsity'),
])
def test_constructor_names_the_bad_argument(kw, arg):
    kw = {'sparsity': 90, **kw}
    with pytest.raises((ValueError, TypeError), match=rf'\b{arg}\b'): SparsifyCallback(**kw)   # the name itself, not start_sparsity for sparsity


# ---------------------------------------------------------------------------------------------- 3: one layer, one callback
def test_two_callbacks_on_one_layer_are_refused_before_training():
    learn = digits_learner()
    before = snapshot(learn)
    with pytest.raises(ValueError, match="layer '3'.*two callbacks"):
        fit(learn, 1, cbs=[SparsifyCallback(50, exclude='0'), SparsifyCallback(90, include='3')])
    assert_params_equal(learn, before)
    assert_plain(learn)

def test_two_callbacks_on_different_layers():
    learn = digits_learner()
    fit(learn, 1, 1e-2, cbs=[SparsifyCallback(50, include='0', schedule=one_shot),
                             SparsifyCallback(90, 'filter', include=['3', '6'], schedule=one_shot)])
    exact(learn, 50, ['0'])
    assert n_zeros(learn.model[3].weight) == round(.9*64)*32*9
    assert_plain(learn)


# ---------------------------------------------------------------------------------------------- 4: stopped early
@pytest.mark.parametrize('stopper', [lambda: CancelAfter(2), lambda: EarlyStoppingCallback(min_delta=1e9, patience=1)])
def test_stopped_early_warns_and_finish_applies_the_target(stopper):
    learn = digits_learner()
    cb = SparsifyCallback(90, schedule=sched_lin)
    with pytest.warns(UserWarning, match=r'stopped at epoch 2 of 4.* at \d+\.\d+ % sparsity.*target is 90 %.*finish'):
        fit(learn, 4, 1e-2, cbs=[cb, stopper()])
    z = n_zeros(learn.model[3].weight)/learn.model[3].weight.numel()
    assert 0.3 < z < 0.7                           # not forced to the target: the user decides
    assert_plain(learn)
    cb.finish()
    exact(learn, 90)
    assert_plain(learn)
    fit(learn, 1, 1e-3, cbs=cb)                   # a later fit with it holds the target
    exact(learn, 90)

def test_cancel_after_the_ramp_is_quiet():
    learn = digits_learner()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        fit(learn, 3, 1e-2, cbs=[SparsifyCallback(90, schedule=sched_lin, end_epoch=1), CancelAfter(2)])
    exact(learn, 90)

def test_finish_without_a_fit():
    learn = digits_learner()
    cb = SparsifyCallback(80, 'weight', 'global')
    cb.finish(learn.model)
    ws = [learn.model.get_submodule(n).weight for n in CONVS]
    assert sum(n_zeros(w) for w in ws) == round(.8*sum(w.numel() for w in ws))
    assert not [k for k in learn.model.state_dict() if 'mask' in k]
    with pytest.raises(ValueError, match='model'): SparsifyCallback(80).finish()


# ---------------------------------------------------------------------------------------------- 5: fine_tune
def test_fine_tune_with_one_parameter_group_prunes_in_its_first_fit():
    """One parameter group: `freeze` freezes nothing, so the learner's state says fine_tune's first fit trains every layer;
    the schedule runs there and the second fit holds the target (issue 23: the state decides, not the call stack)"""
    learn = digits_learner()
    cb, seen = SparsifyCallback(90, schedule=sched_cos), []
    class Zeros(Callback):
        def after_fit(self): seen.append(n_zeros(self.model[3].weight))
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)           # nothing waits, nothing warns
        fit(learn, 2, 1e-2, how='fine_tune', cbs=[cb, Zeros()])
    assert seen == [round(.9*learn.model[3].weight.numel())]*2 and cb.completed and cb.offset == 0
    exact(learn, 90)

def test_fine_tune_frozen_body_with_pruned_head():
    "The head trains in the first stage but the body is frozen: no layer is pruned while frozen"
    learn = digits_learner(splitter=lambda m: [params(m[:-1]), params(m[-1])])
    seen = []
    class Zeros(Callback):
        def after_fit(self): seen.append(sum(n_zeros(l.weight) for l in self.model.modules() if isinstance(l, (nn.Conv2d, nn.Linear))))
    cb = SparsifyCallback(90, schedule=sched_cos, prune_output=True)
    with pytest.warns(UserWarning, match='frozen'):
        fit(learn, 2, 1e-2, how='fine_tune', cbs=[cb, Zeros()])
    assert seen[0] == 0                              # dense after the frozen stage
    exact(learn, 90, CONVS + ['11'])
    x = [h[0] for h in cb.history]
    assert x[0] > 1 and x[-1] == pytest.approx(3)    # after the frozen epoch, up to the end of fine_tune
    assert cb.history[0][2] < 10                     # starts dense: the ramp is in the unfrozen stage
    ax = cb.plot()
    assert ax.get_xlim() == (0, 3)
    assert any('frozen stage' in t.get_text() for t in ax.get_legend().get_texts())

def test_frozen_stage_read_from_the_optimizer():
    "A layer in a parameter group below `opt.frozen_idx` waits even if its requires_grad was switched back on"
    learn = digits_learner(splitter=lambda m: [params(m[:-1]), params(m[-1])])
    learn.freeze()
    learn.model[0].weight.requires_grad_(True)       # the optimizer still holds group 0 frozen
    with pytest.warns(UserWarning, match=r"frozen in this fit \('0', '3', '6'\)"):
        fit(learn, 1, 1e-2, cbs=SparsifyCallback(90, schedule=one_shot))
    assert all(n_zeros(learn.model.get_submodule(n).weight) == 0 for n in CONVS)

def test_fit_with_frozen_selected_layer_waits():
    learn = digits_learner()
    learn.model[0].weight.requires_grad_(False)
    with pytest.warns(UserWarning, match=r"frozen in this fit \('0'\).*exclude"):
        fit(learn, 1, 1e-2, cbs=SparsifyCallback(90, schedule=one_shot))
    assert all(n_zeros(learn.model.get_submodule(n).weight) == 0 for n in CONVS)
    assert_plain(learn)


# ---------------------------------------------------------------------------------------------- 10: the output layer
def test_output_layer_left_dense_is_said():
    learn = digits_learner(digits_mlp())
    cb = SparsifyCallback(90, layer_types=(nn.Linear,), schedule=one_shot)
    with pytest.warns(UserWarning, match=r"output layer '5' \(Linear\).*prune_output=True"):
        fit(learn, 1, 1e-2, cbs=cb)
    r = cb.report()
    assert r.set_index('name').loc['5', 'pruned'] == False and r.set_index('name').loc['3', 'pruned'] == True
    assert n_zeros(learn.model[5].weight) == 0

def test_no_layer_selected_names_the_types_asked_for():
    learn = digits_learner()
    with pytest.raises(ValueError, match=r'No layer selected.*ConvTranspose2d'):
        fit(learn, 1, cbs=SparsifyCallback(90, layer_types=(nn.ConvTranspose2d,)))


# ---------------------------------------------------------------------------------------------- 11: late errors made early
class GradNaN(Criterion):
    "A gradient criterion with NaN scores"
    needs_grad, name = True, 'grad_nan'
    def update(self, layers): pass
    def score(self, name, layer, weight): return weight*float('nan')

class WrongArgs(Criterion):
    name = 'wrong_args'
    def score(self, weight): return weight.abs()

@pytest.mark.parametrize('crit', [
    lambda w: w.abs().sum(),                 # wrong shape
    lambda w: w.abs()*float('nan'),          # NaN
    lambda w: (w.abs()*100).int(),           # int tensor
    lambda w, extra: w.abs(),                # takes the wrong arguments
    WrongArgs(), GradNaN()])
def test_bad_criterion_fails_before_any_step(crit):
    learn = digits_learner()
    before = snapshot(learn)
    with pytest.raises(ValueError, match=r"`criteria`.*layer '0'"):
        fit(learn, 1, 1e-2, cbs=SparsifyCallback(90, criteria=crit, schedule=one_shot))
    assert_params_equal(learn, before)
    assert_plain(learn)

def _nan_off_grid(start, end, pos):
    "Finite on the 101 points check_schedule tries, NaN between them"
    return start + (end - start)*pos if abs(pos*100 - round(pos*100)) < 1e-9 else float('nan')

def _raises_late(start, end, pos):
    if 0.3 < pos < 0.31: raise ZeroDivisionError('late')
    return start + (end - start)*pos

@pytest.mark.parametrize('sched', [_nan_off_grid, _raises_late])
def test_bad_schedule_fails_before_training(sched):
    learn = digits_learner()
    before = snapshot(learn)
    with pytest.raises(ValueError, match=r'`schedule` _(nan_off_grid|raises_late)'):
        fit(learn, 3, 1e-2, cbs=SparsifyCallback(90, schedule=sched))
    assert_params_equal(learn, before)
    assert_plain(learn)


# ---------------------------------------------------------------------------------------------- 12: unreachable 'global'
def test_global_target_that_min_kept_makes_unreachable_fails_before_training():
    learn = digits_learner()
    before = snapshot(learn)
    with pytest.raises(ValueError, match=r'min_kept.*reachable'):
        fit(learn, 2, 1e-2, cbs=SparsifyCallback(100, 'weight', 'global', schedule=sched_lin))
    assert_params_equal(learn, before)
    with pytest.raises(ValueError, match=r'min_kept'):
        fit(learn, 2, 1e-2, cbs=SparsifyCallback(98, 'filter', 'global', min_kept=16, schedule=sched_lin))
    assert_params_equal(learn, before)


# ---------------------------------------------------------------------------------------------- 7: 'global' + layer_sparsity
def test_global_with_layer_sparsity_makes_up_the_total():
    learn = digits_learner()
    cb = SparsifyCallback(90, 'weight', 'global', schedule=sched_agp, layer_sparsity={'0': 50})
    fit(learn, 2, 1e-2, cbs=cb)
    ws = [learn.model.get_submodule(n).weight for n in CONVS]
    assert n_zeros(ws[0]) == round(.5*288)
    assert sum(n_zeros(w) for w in ws) == round(.9*sum(w.numel() for w in ws))
    assert cb.realised == pytest.approx(90, abs=1e-3)

@pytest.mark.parametrize('ls, match', [({'?': 50, '3': 80, '6': 95}, 'every selected layer'),
                                       ({'6': 0}, 'would need')])
def test_global_with_layer_sparsity_refuses_what_it_cannot_reach(ls, match):
    learn = digits_learner()
    with pytest.raises(ValueError, match=match):
        fit(learn, 1, cbs=SparsifyCallback(95, 'weight', 'global', layer_sparsity=ls))
    assert_plain(learn)


# ---------------------------------------------------------------------------------------------- 13: nothing left behind
@pytest.mark.parametrize('keep_masks', [False, True])
@pytest.mark.parametrize('exc', [KeyboardInterrupt, RuntimeError('another callback crashed')])
def test_any_exception_leaves_a_documented_state(exc, keep_masks):
    "A crash between the optimizer step and our mask update: the last masks are applied as exact zeros all the same"
    learn = digits_learner(opt_func=partial(SGD, mom=0.9))
    spy = MaskSpy()
    crash = Raise(exc, at=30, event='after_step', order=SparsifyCallback.order - 1)
    with pytest.raises(type(exc) if isinstance(exc, BaseException) else exc):
        fit(learn, 3, 5e-2, cbs=[SparsifyCallback(90, schedule=sched_lin, keep_masks=keep_masks), spy, crash])
    assert spy.last is not None
    for n, m in spy.last.items():
        w = learn.model.get_submodule(n).weight
        assert n_zeros(w[~m]) == int((~m).sum()) > 0, n
    assert 'sparsity' not in [getattr(m, 'name', '') for m in learn.metrics]
    assert not [k for k in learn.model.state_dict() if 'pruned' in k]
    masks = [k for k in learn.model.state_dict() if 'mask' in k]
    assert bool(masks) == keep_masks
    if not keep_masks: assert_plain(learn)
    fit(learn, 1, 1e-2, cbs=SparsifyCallback(50, schedule=one_shot))      # the next fit has one `sparsity` column
    assert learn.recorder.metric_names.count('sparsity') == 1

@pytest.mark.parametrize('cls', ['SparsifyCallback', 'PatternLock'])
def test_crash_with_the_callback_in_the_learner_is_repaired_by_the_next_fit(cls):
    "`Learner(cbs=...)`: fastai keeps the callback after a crash; its next before_fit cleans the stale state first"
    learn = digits_learner()
    if cls == 'PatternLock':
        SparsifyCallback(50, schedule=one_shot).finish(learn.model)
        cb = PatternLock()
    else: cb = SparsifyCallback(90, schedule=sched_lin)
    learn.add_cb(cb)
    with pytest.raises(RuntimeError, match='boom'):
        fit(learn, 2, 1e-2, cbs=Raise(RuntimeError('boom'), at=20))
    assert [k for k in learn.model.state_dict() if k.endswith('weight_mask')]     # fastai fired no event: left as it was
    if cls == 'SparsifyCallback': assert learn.metrics[-1].name == 'sparsity'
    fit(learn, 1, 1e-2)
    assert learn.recorder.metric_names.count('sparsity') == (cls == 'SparsifyCallback')
    learn.remove_cb(cb)
    assert_plain(learn)
    if cls == 'SparsifyCallback': exact(learn, 90)

def test_crash_in_before_fit_of_a_later_callback():
    learn = digits_learner()
    cb = SparsifyCallback(90)
    with pytest.raises(RuntimeError, match='boom'):
        fit(learn, 1, cbs=[cb, Raise(RuntimeError('boom'), at=-1, event='before_fit', order=50)])
    assert_plain(learn)
    fit(learn, 1, 1e-2, cbs=cb)                                             # and the same callback runs again
    exact(learn, 90)

def test_diverged_fit_raises_and_cleans_up():
    learn = digits_learner()
    with pytest.raises(ValueError, match=r"NaN or inf.*diverged.*TerminateOnNaNCallback"):
        fit(learn, 2, 1e-2, cbs=[SparsifyCallback(90, schedule=sched_lin), NaNLoss(at=5)])
    assert_plain(learn)


# ---------------------------------------------------------------------------------------------- 14: TerminateOnNaN
def test_terminate_on_nan_keeps_working():
    learn = digits_learner()
    with pytest.warns(UserWarning, match='stopped at epoch'):
        fit(learn, 2, 1e-2, cbs=[SparsifyCallback(90, schedule=sched_lin), NaNLoss(at=5), TerminateOnNaNCallback()])
    assert learn.iter == 5 and learn.epoch == 0      # fastai's guard cancelled at the NaN batch
    assert_plain(learn)


# ---------------------------------------------------------------------------------------------- 23: a good guest
def test_import_replaces_nothing_in_fastai_or_torch():
    "Importing fasterprune adds methods (`Learner.compact`, `Learner.load_pruned`) but replaces none"
    code = ("import fastai.basics, fastai.callback.all, fastai.distributed, torch, torch.nn as nn\n"
            "from fastai.learner import Learner\n"
            "snap = lambda: {(c.__name__, k): v for c in (Learner, nn.Module, torch.Tensor) for k, v in vars(c).items()}\n"
            "a = snap(); import fasterprune.all; b = snap()\n"
            "print(sorted(f'{c}.{k}' for (c, k) in a if b.get((c, k)) is not a[(c, k)]), sorted(f'{c}.{k}' for (c, k) in b if (c, k) not in a))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split('\n')[0] == "[] ['Learner.compact', 'Learner.load_pruned']", out


# ---------------------------------------------------------------------------------------------- 15: checkpoints
def test_no_mask_keys_before_pruning():
    learn = digits_learner(cbs=SparsifyCallback(90))
    assert not [k for k in learn.model.state_dict() if 'mask' in k]
    digits_cnn().load_state_dict(learn.model.state_dict())             # strict
    with learn.no_bar(), learn.no_logging(): learn.lr_find(num_it=10, show_plot=False)
    assert not [k for k in learn.model.state_dict() if 'mask' in k]

@pytest.mark.parametrize('style', ['Learner(cbs=...)', 'fit(cbs=...)'])
def test_resume_from_a_pruned_checkpoint(tmp_path, style):
    "learn.load of a mid-training checkpoint works in both styles, and the resumed fit ends with the uninterrupted run's masks"
    mk = lambda: SparsifyCallback(90, schedule=sched_agp, end_epoch=3)
    def learner():
        learn = digits_learner(path=tmp_path, cbs=mk() if style.startswith('Learner') else None)
        learn.dls.train.shuffle = False
        return learn
    def go(learn, *a, cbs=(), **kw):
        fit(learn, 4, 1e-2, *a, how='fit_one_cycle', cbs=list(cbs) + ([] if style.startswith('Learner') else [mk()]), **kw)
    a = learner(); go(a)
    b = learner()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')            # the interrupted run warns that it stopped early
        go(b, cbs=[SaveModelCallback(every_epoch=True, fname='ck', with_opt=True), CancelAfter(2)])
    c = learner()
    with pytest.raises(RuntimeError, match='weight_mask'): c.load('ck_1')      # fastai's load is fastai's: strict
    c.load_pruned('ck_1')
    assert [k for k in c.model.state_dict() if k.endswith('weight_mask')]
    go(c, start_epoch=2)
    for n in CONVS:
        assert torch.equal(a.model.get_submodule(n).weight == 0, c.model.get_submodule(n).weight == 0), n
    exact(c, 90)
    assert_plain(c)
