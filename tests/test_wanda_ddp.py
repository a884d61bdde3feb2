"""`Wanda` under torch.distributed (gloo, CPU, two processes): the input statistics are all-reduced, so both ranks score
alike, from the batches of both, although each saw different data; with `sync=False` each rank keeps its own."""
import json, os, socket, subprocess, sys
import torch

def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _data(rank):
    g = torch.Generator().manual_seed(100 + rank)
    return [torch.randn(3, 5, 6, generator=g) * (1 + 9*rank), torch.randn(4, 6, generator=g)], \
           [torch.randn(2, 3, 7, 7, generator=g) * (1 + rank)]

def _child(out_dir):
    import torch.distributed as dist
    from torch import nn
    from fasterprune.criteria import Wanda
    torch.set_num_threads(1)
    dist.init_process_group('gloo')
    r = dist.get_rank()
    torch.manual_seed(0)
    lin, conv = nn.Linear(6, 4), nn.Conv2d(3, 5, 3)
    res = {}
    for sync in (True, False):
        c = Wanda(sync=sync); c.reset({'lin': lin, 'conv': conv})
        xs, cs = _data(r)
        for x in xs: lin(x)
        for x in cs: conv(x)
        res[str(sync)] = dict(lin=c('lin', lin, lin.weight).tolist(), conv=c('conv', conv, conv.weight).tolist())
        if sync:                        # more batches after a scoring: added once, not twice
            lin(xs[1]); res['again'] = c('lin', lin, lin.weight).tolist()
    json.dump(res, open(os.path.join(out_dir, f'rank{r}.json'), 'w'))
    dist.destroy_process_group()

def test_wanda_all_reduce(tmp_path):
    port, procs = _free_port(), []
    for r in range(2):
        env = {**os.environ, 'RANK': str(r), 'WORLD_SIZE': '2', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port),
               'OMP_NUM_THREADS': '1', 'CUDA_VISIBLE_DEVICES': ''}
        procs.append(subprocess.Popen([sys.executable, __file__, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, o in zip(procs, outs): assert p.returncode == 0, o[-3000:]
    a, b = [json.load(open(tmp_path/f'rank{r}.json')) for r in range(2)]
    from torch import nn
    torch.manual_seed(0)
    lin, conv = nn.Linear(6, 4), nn.Conv2d(3, 5, 3)
    xs = [x.reshape(-1, 6) for r in range(2) for x in _data(r)[0]]
    cs = [x.transpose(0, 1).reshape(3, -1) for r in range(2) for x in _data(r)[1]]
    exp_lin = lin.weight.detach().abs() * torch.cat(xs).square().mean(0).sqrt()
    exp_conv = conv.weight.detach().abs() * torch.cat(cs, 1).square().mean(1).sqrt().reshape(1, 3, 1, 1)
    for r in (a, b):       # both ranks: the statistics of both ranks' batches
        torch.testing.assert_close(torch.tensor(r['True']['lin']), exp_lin)
        torch.testing.assert_close(torch.tensor(r['True']['conv']), exp_conv)
    assert a['True'] == b['True']
    assert a['False']['lin'] != b['False']['lin']          # without sync: each rank its own (the data differ)
    xs2 = xs + [_data(r)[0][1].reshape(-1, 6) for r in range(2)]
    torch.testing.assert_close(torch.tensor(a['again']), lin.weight.detach().abs() * torch.cat(xs2).square().mean(0).sqrt())
    assert a['again'] == b['again']

if __name__ == '__main__': _child(sys.argv[1])
