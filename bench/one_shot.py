"""Block-by-block one-shot pruning on a LLaMA-shaped model of 134M parameters, on this CPU: peak memory and time.

`prune_one_shot` with Wanda and SparseGPT, by block (the default: inputs of the first decoder layer captured, each layer
calibrated, pruned and run in turn) and on the whole model at once (`blocks=False`: hooks on every layer, every
statistic held at the same time), with and without the CPU snapshot that makes a failure leave the weights unchanged.
Each run is a fresh subprocess with 1 thread; peak memory is the process's peak RSS during the call minus its RSS
before it (the model itself is not counted). The machine is shared: times are indicative, memory is not affected.
"""
from __future__ import annotations
import json, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import status_mib, reset_peak_rss, write_results

CONFIG = dict(model=dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=512,
                         tie_word_embeddings=False),
              calib=dict(batches=8, batch_size=1, seq_len=256, seed=0), sparsity=50,
              cases=[['wanda', 'blocks', True], ['wanda', 'blocks', False], ['wanda', 'whole', False],
                     ['sparsegpt', 'blocks', True], ['sparsegpt', 'blocks', False], ['sparsegpt', 'whole', False]])
NAME = 'one_shot'


def child(method, mode, snapshot):
    import torch
    torch.set_num_threads(1)
    from _common import declare_torchvision_ops; declare_torchvision_ops()
    from transformers import LlamaConfig, LlamaForCausalLM
    from fasterprune.oneshot import prune_one_shot
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG['model'])).eval()
    c = CONFIG['calib']
    g = torch.Generator().manual_seed(c['seed'])
    calib = [torch.randint(0, CONFIG['model']['vocab_size'], (c['batch_size'], c['seq_len']), generator=g) for _ in range(c['batches'])]
    n_params = sum(p.numel() for p in model.parameters())
    reset = reset_peak_rss()
    r0 = status_mib('VmRSS')
    t = time.perf_counter()
    prune_one_shot(model, calib, CONFIG['sparsity'], method=method, blocks=None if mode == 'blocks' else False, snapshot=snapshot)
    secs = time.perf_counter() - t
    peak = status_mib('VmHWM') - r0
    z = sum(int((m.weight == 0).sum()) for n,m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != 'lm_head')
    print(json.dumps(dict(method=method, mode=mode, snapshot=snapshot, seconds=secs, peak_extra_mib=peak, peak_reset=reset,
                          model_mib=n_params * 4 / 2**20, n_params=n_params, zeros=z)))

def main():
    rows, t0 = [], time.perf_counter()
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    for method, mode, snap in CONFIG['cases']:
        p = subprocess.run([sys.executable, __file__, '--child', method, mode, str(snap)], capture_output=True, text=True, env=env)
        if p.returncode: raise RuntimeError(p.stderr[-3000:])
        rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    m = rows[0]
    md = [f"LLaMA-shaped model built from a config (random weights): {m['n_params']/1e6:.0f}M parameters "
          f"({m['model_mib']:.0f} MiB in float32), 12 decoder layers of hidden size 768; calibration "
          f"{CONFIG['calib']['batches']} x {CONFIG['calib']['seq_len']} tokens; {CONFIG['sparsity']} % of every Linear but "
          "`lm_head`. Peak memory = peak RSS during `prune_one_shot` minus RSS before it. 1 thread, shared 2-core machine: "
          "times are indicative.", '',
          '| method | processing | snapshot | time (s) | peak extra memory (MiB) |', '|---|---|---|---|---|']
    for r in rows:
        md.append(f"| {r['method']} | {'block by block' if r['mode'] == 'blocks' else 'whole model (blocks=False)'} | "
                  f"{'yes' if r['snapshot'] else 'no'} | {r['seconds']:.1f} | {r['peak_extra_mib']:.0f} |")
    write_results(NAME, CONFIG, rows, '\n'.join(md), __file__, elapsed_s=time.perf_counter() - t0)

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--child': child(sys.argv[2], sys.argv[3], sys.argv[4] == 'True')
    else: main()
