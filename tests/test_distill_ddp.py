"""KnowledgeDistillationCallback beside SparsifyCallback, and rewinding (`rewind_epoch`), in two processes (gloo, CPU) through fastai's `distrib_ctx`.

Started as tests/test_distributed.py starts its processes (its `launch`, and its patches that let fastai's GPU-only
paths run on CPU); each rank writes what it saw to `rank{r}.json` and the test compares the ranks."""
import hashlib, json, os, sys
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_distributed import launch, _patch_fastai_for_cpu   # noqa: E402

SPARSITY = 80

def _hash(tensors): return hashlib.sha1(b''.join(t.detach().contiguous().numpy().tobytes() for t in tensors)).hexdigest()

@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    pytest.importorskip('accelerate')
    return launch(__file__, tmp_path_factory.mktemp('kd_ddp'))

def test_distillation_under_ddp(ranks):
    "Both ranks end with the same student weights and masks; the teacher is unchanged, frozen and in eval mode"
    a, b = ranks
    assert a['ddp'] and b['ddp']                                   # the student really was wrapped in DDP
    assert a['params'] == b['params']
    assert a['teacher_before'] == a['teacher_after'] == b['teacher_before'] == b['teacher_after']
    for r in (a, b):
        assert r['teacher_frozen'] and not r['teacher_training']
        assert r['distilled_batches'] > 0 and r['kd_changed_loss']
        assert abs(r['sparsity'] - SPARSITY) < 1.5

def test_rewinding_under_ddp(ranks):
    "Rewinding to the weights of epoch 0, and random re-initialisation (seeded alike on every rank): the ranks agree"
    a, b = ranks
    for k in ('rewind', 'reinit'):
        assert a[k]['n_rewinds'] == b[k]['n_rewinds'] == 1
        assert a[k]['params'] == b[k]['params'] and a[k]['masks'] == b[k]['masks']
    assert a['rewind']['params'] != a['reinit']['params']

def _rewind_fit(path, reinit):
    import torch
    from fastai.basics import rank_distrib
    from fasterprune.callback import SparsifyCallback
    from fasterprune.rewind import Rewinder
    from fasterprune.schedules import one_shot
    from fasterprune.demo import digits_learner
    learn = digits_learner(path=path)
    torch.manual_seed(1 + rank_distrib())
    cb = SparsifyCallback(SPARSITY, schedule=one_shot, start_epoch=1, rewind_epoch=Rewinder(0, reinit=reinit), keep_masks=True)
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(): learn.fit(2, 1e-3, cbs=cb)
    return dict(n_rewinds=cb.rewinder.n_rewinds, params=_hash(learn.model.parameters()),
                masks=_hash([l.weight_mask for l in cb.sparsifier.layers.values()]))

def _worker(out_dir):
    import pathlib, torch
    from torch import nn
    torch.set_num_threads(1)
    _patch_fastai_for_cpu()
    from fastai.basics import Callback, rank_distrib
    from torch.nn.parallel import DistributedDataParallel as DDP
    from fasterprune.callback import SparsifyCallback
    from fasterprune.distill import KnowledgeDistillationCallback
    from fasterprune.demo import digits_learner, digits_cnn
    r, out = rank_distrib(), pathlib.Path(out_dir)
    torch.manual_seed(0)
    teacher = digits_cnn(16)                     # a (random) teacher: the same on both ranks, never trained here
    before = _hash(teacher.state_dict().values())
    class Spy(Callback):
        order = 99
        def before_fit(self): self.n, self.changed, self.ddp = 0, False, isinstance(self.learn.model, DDP)
        def after_loss(self):
            if self.training:
                self.n += 1
                own = self.learn.loss_func(self.pred, *self.yb)
                self.changed |= not torch.allclose(own, self.learn.loss_grad)
    learn = digits_learner(path=out/'work')
    torch.manual_seed(1 + r)                     # ranks draw differently, as unseeded processes do
    cb, spy = SparsifyCallback(SPARSITY), Spy()
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx():
        learn.fit_one_cycle(1, 1e-2, cbs=[cb, KnowledgeDistillationCallback(teacher), spy])
    ws = [l.weight for l in cb.sparsifier.layers.values()]
    res = dict(ddp=spy.ddp, params=_hash(learn.model.parameters()), teacher_before=before,
               teacher_after=_hash(teacher.state_dict().values()), teacher_training=teacher.training,
               teacher_frozen=not any(p.requires_grad for p in teacher.parameters()), distilled_batches=spy.n,
               kd_changed_loss=spy.changed, sparsity=100*sum(int((w == 0).sum()) for w in ws)/sum(w.numel() for w in ws))
    res.update(rewind=_rewind_fit(out/'work', False), reinit=_rewind_fit(out/'work', True))
    (out/f'rank{r}.json').write_text(json.dumps(res))

if __name__ == '__main__': _worker(sys.argv[1])
