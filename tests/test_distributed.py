"""SparsifyCallback in two processes (gloo, CPU) through fastai's `distrib_ctx`: the same masks on every rank at every update.

The test starts two copies of this file as a torchrun would (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT in the
environment); each runs every case in `CASES` and writes what it saw to `rank{r}.json`; the test compares the ranks.
Short patches let fastai 2.8.12's GPU-only paths run on CPU (see `_patch_fastai_for_cpu`)."""
import hashlib, json, os, socket, subprocess, sys, warnings
import pytest

CASES = [dict(context=c, criteria=k, granularity=g) for c in ('local', 'global') for k in ('large_final', 'snip_momentum')
         for g in ('weight', 'filter')] + [dict(context='local', criteria=k, granularity='weight') for k in ('random', 'per_rank')]
# 'per_rank': a criterion that scores differently on each rank (a mistake): the callback notices and takes rank 0's model
SPARSITY, EXCLUDE = 80, '0'          # layer '0' is named as the user knows it (no `module.` prefix) and stays dense

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def launch(script, out_dir, nproc=2, timeout=240, args=()):
    "Run `script` in `nproc` processes with the environment torchrun gives them; raise with their output if one fails"
    port, procs = _free_port(), []
    for r in range(nproc):
        env = {**os.environ, 'RANK': str(r), 'LOCAL_RANK': str(r), 'WORLD_SIZE': str(nproc), 'LOCAL_WORLD_SIZE': str(nproc),
               'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': '',
               'ACCELERATE_USE_CPU': '1'}   # what `accelerate launch --cpu` sets: gloo, DDP on CPU
        procs.append(subprocess.Popen([sys.executable, script, str(out_dir), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try: outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
    for r, (p, o) in enumerate(zip(procs, outs)):
        if p.returncode: raise AssertionError(f"rank {r} failed (exit {p.returncode}):\n{o[-4000:]}")
    return [json.load(open(os.path.join(out_dir, f'rank{r}.json'))) for r in range(nproc)]

@pytest.fixture(scope='module')
def ddp_dir(tmp_path_factory):
    pytest.importorskip('accelerate')      # fastai's distrib_ctx runs on it
    return tmp_path_factory.mktemp('ddp')

@pytest.fixture(scope='module')
def ranks(ddp_dir): return launch(__file__, ddp_dir)

@pytest.mark.parametrize('i', range(len(CASES)), ids=['-'.join(c.values()) for c in CASES])
def test_same_masks_on_every_rank_at_every_update(ranks, i):
    "Each rank's digest of every layer's mask is the same at every mask update; the target is reached"
    r0, r1 = (r['cases'][i] for r in ranks)
    assert len(r0['digests']) >= 5 and r0['digests'] == r1['digests']
    for r in (r0, r1):
        assert r['layers'] == ['3', '6'] and r['dense_0']          # `exclude='0'` held inside distrib_ctx
        assert r['final'] == r0['final'] and abs(r['final'] - SPARSITY) < 1.5
        assert r['in_broadcast'] and r['broadcast_changed'] == 0    # DDP broadcasts the masks and kept values: it changes nothing
        assert r['params'] == r0['params']                          # and the weights agree
        assert r['differ_warned'] == (CASES[i]['criteria'] == 'per_rank')
        if CASES[i]['granularity'] == 'filter': assert r['bn'] == ['SyncBatchNorm'] * 2 and r['bn_zeroed']

def test_resume_from_a_distributed_checkpoint(ranks):
    "A 2-process fit saved by rank 0 after epoch 1 and resumed on 2 processes ends with the uninterrupted run's masks"
    a, b = (r['resume'] for r in ranks)
    assert a['uninterrupted'] == b['uninterrupted'] == a['resumed'] == b['resumed']
    assert a['saves'] >= 1 and b['saves'] == 0                        # only rank 0 writes the checkpoint
    assert a['exported'] == ['0.weight', '3.weight', '6.weight']      # learn.export: a plain model, the user's names

def test_resume_on_one_process(ranks, ddp_dir):
    "The 2-process fit's checkpoint after its ramp (rank 0's file) resumed in one process keeps the uninterrupted masks"
    from fastai.basics import Callback
    from fasterprune.callback import SparsifyCallback
    from fasterprune.schedules import sched_agp
    from fasterprune.demo import digits_learner
    learn = digits_learner(path=ddp_dir/'work')
    cb = SparsifyCallback(SPARSITY, schedule=sched_agp, end_epoch=2, exclude=EXCLUDE)
    learn.load_pruned('ck_1')                                   # saved after epoch 2 of 3, where the ramp ends
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(3, 1e-2, cbs=cb, start_epoch=2)
    assert _digest(cb.sparsifier.layers) == ranks[0]['resume']['uninterrupted']

# ---- what each process runs ----------------------------------------------------------------------------------------

def _patch_fastai_for_cpu():
    "Let fastai 2.8.12's distributed code run on CPU processes with gloo (its GPU-only paths, patched for the test only)"
    import torch
    from torch import nn
    from fastai.distributed import DistributedDL
    def _broadcast(self, t, rank):
        "fastai moves the indices to CUDA for NCCL (`.cuda()`); gloo broadcasts CPU tensors"
        t = torch.tensor(t, dtype=torch.long); torch.distributed.broadcast(t, rank); return t.tolist()
    DistributedDL._broadcast = _broadcast
    # SyncBatchNorm refuses CPU modules (DDP) and inputs (forward): keep the modules `distrib_ctx` substitutes (what
    # 'filter' must find) but let them compute per-process statistics, as BatchNorm does
    nn.parallel.DistributedDataParallel._passing_sync_batchnorm_handle = lambda self, module: None
    nn.SyncBatchNorm.forward = nn.modules.batchnorm._BatchNorm.forward

def _digest(layers, keys=('weight_mask',)):
    "A hash of every layer's mask (of its zeros once the fit has removed the masks), or of its buffers `keys`"
    ms = [getattr(l, k) if hasattr(l, k) else l.weight != 0 for l in layers.values() for k in keys]
    return hashlib.sha1(b''.join(m.numpy().tobytes() for m in ms)).hexdigest()

def _spy(cb, rec):
    "A callback after `cb` that records a digest of its masks whenever they were recomputed"
    from fastai.basics import Callback
    from torch.nn.parallel import DistributedDataParallel as DDP
    def state(): return _digest(cb.sparsifier.layers, ('weight_mask', 'weight_pruned'))
    class Spy(Callback):
        order = cb.order + 1
        def before_fit(self): self.n = 0; rec['broadcast_changed'] = 0
        def before_batch(self):
            if self.training: self.before = state()
        def after_pred(self):    # DDP broadcast rank 0's buffers in its forward pass: on every rank they were the same
            if self.training: rec['broadcast_changed'] += state() != self.before
        def after_step(self):
            sp, m = cb.sparsifier, self.learn.model
            if cb.n_prunes != self.n: self.n = cb.n_prunes; rec['digests'].append(_digest(sp.layers))
            m._assign_modules_buffers()      # what DDP broadcasts now (read to check the mechanism, not used by the library)
            rec['in_broadcast'] = isinstance(m, DDP) and any(k.endswith('weight_mask') for k in m.named_module_buffers)
    return Spy()

def _case(kw, path):
    import torch
    from fastai.basics import rank_distrib
    from fasterprune.callback import SparsifyCallback
    from fasterprune.criteria import FuncCriterion
    from fasterprune.demo import digits_learner
    learn = digits_learner(path=path)
    torch.manual_seed(1 + rank_distrib())     # ranks draw differently, as unseeded processes do (DDP syncs the weights)
    if kw['criteria'] == 'per_rank':
        g = torch.Generator().manual_seed(rank_distrib())
        kw = dict(kw, criteria=FuncCriterion(lambda w: torch.rand(w.shape, generator=g), 'per_rank'))
    cb, rec = SparsifyCallback(SPARSITY, exclude=EXCLUDE, **kw), dict(digests=[])
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(), warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        learn.fit_one_cycle(1, 1e-2, cbs=[cb, _spy(cb, rec)])
    rec['differ_warned'] = any('masks differ between the processes' in str(w.message) for w in ws)
    rec['params'] = hashlib.sha1(b''.join(p.detach().numpy().tobytes() for p in learn.model.parameters())).hexdigest()
    sp, model = cb.sparsifier, learn.model
    # what the target counts: weights, or filters ('global' ranks structures)
    zs = [(l.weight == 0).flatten(1 if kw['granularity'] == 'filter' else 0) for l in sp.layers.values()]
    if kw['granularity'] == 'filter': zs = [z.all(1) for z in zs]
    rec.update(layers=list(sp.layers), dense_0=bool((model[0].weight != 0).all()),
               final=100*sum(int(z.sum()) for z in zs)/sum(z.numel() for z in zs))
    if kw['granularity'] == 'filter':
        rec['bn'] = [type(sp._bn[n]).__name__ for n in sp.layers]
        rec['bn_zeroed'] = all(bool((sp._bn[n].weight[(l.weight.flatten(1) == 0).all(1)] == 0).all()) for n,l in sp.layers.items())
    return rec

def _resume(path):
    "Masks after an uninterrupted 3-epoch fit, and after the same fit saved after epoch 1 and resumed (ck_1 for one process)"
    from fastai.basics import Callback, CancelFitException, rank_distrib
    from fastai.callback.tracker import SaveModelCallback
    from fasterprune.callback import SparsifyCallback
    from fasterprune.schedules import sched_agp
    from fasterprune.demo import digits_learner
    class CancelAfter(Callback):
        order = 99
        def after_epoch(self):
            if self.epoch >= 1: raise CancelFitException()   # after ck_0 (mid-ramp) and ck_1 (end of the ramp)
    def run(cancel=False, load=None):
        learn = digits_learner(path=path)
        learn.dls.train.shuffle = False
        cb = SparsifyCallback(SPARSITY, schedule=sched_agp, end_epoch=2, exclude=EXCLUDE)
        cbs = [cb] + ([SaveModelCallback(every_epoch=True, fname='ck', with_opt=True), CancelAfter()] if cancel else [])
        if load: learn.load_pruned(load)
        with learn.no_bar(), learn.no_logging(), learn.distrib_ctx():
            learn.fit_one_cycle(3, 1e-2, cbs=cbs, start_epoch=1 if load else 0)
        if load: learn.export('export.pkl')
        return _digest(cb.sparsifier.layers) if not cancel else None
    res = dict(uninterrupted=run())
    import torch
    saves, save = [], torch.save
    torch.save = lambda *a, **k: (saves.append(1), save(*a, **k))[1]   # counts this rank's writes
    try: run(cancel=True)
    finally: torch.save = save
    res.update(saves=len(saves), resumed=run(load='ck_0'))      # `Learner.load_pruned` waits for every rank (a barrier) first
    if rank_distrib() == 0:                                     # fastai exports on rank 0 only
        import torch   # not load_learner: its barrier would wait for rank 1
        sd = torch.load(path/'export.pkl', weights_only=False).model.state_dict()
        res['exported'] = [k for k in sd if k.endswith(('weight', 'weight_mask', 'weight_pruned')) and 'module' not in k
                           and sd[k].dim() == 4]
    return res

def _worker(out_dir):
    import pathlib, torch
    torch.set_num_threads(1)
    _patch_fastai_for_cpu()
    from fastai.basics import rank_distrib
    r, out = rank_distrib(), pathlib.Path(out_dir)
    path = out/'work'
    res = dict(cases=[_case(kw, path) for kw in CASES], resume=_resume(path))
    (out/f'rank{r}.json').write_text(json.dumps(res))

if __name__ == '__main__': _worker(sys.argv[1])
