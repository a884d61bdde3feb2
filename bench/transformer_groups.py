"""Time and memory of `channel_groups` (the coupled channel groups behind 'coupled' and `compact`) on LLM-sized configs.

Issue 20, item 5: a 12-layer GPT-2-small configuration (124M parameters) and a 4-layer LLaMA configuration with
grouped-query attention, random weights built from their configs (nothing downloaded), a batch of 1 x 16 tokens.
Goal: at most 60 s and 2 GB of extra memory each on this CPU. Each case runs in a fresh subprocess; the extra memory is
the RSS high-water mark during the call minus the RSS before it (the model itself is not counted).
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = 'transformer_groups'
CONFIG = dict(
    cases={'gpt2-small': dict(kind='gpt2', vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
           'llama-4layer-gqa': dict(kind='llama', vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                                    num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=8)},
    tokens=[1, 16], threads=1, runs=2, goal_seconds=60, goal_extra_mb=2048)


def child(case:str):
    "One measurement in this fresh process: prints a JSON line"
    import torch
    torch.set_num_threads(CONFIG['threads'])
    from _common import declare_torchvision_ops; declare_torchvision_ops()
    import transformers as T
    sys.path.insert(0, str(HERE))
    from _common import status_mib, reset_peak_rss
    from fasterprune.groups import channel_groups, HeadGroup
    cfg = dict(CONFIG['cases'][case]); kind = cfg.pop('kind')
    torch.manual_seed(0)
    m = (T.GPT2LMHeadModel(T.GPT2Config(**cfg)) if kind == 'gpt2' else T.LlamaForCausalLM(T.LlamaConfig(**cfg))).eval()
    class Logits(torch.nn.Module):
        def __init__(self, m): super().__init__(); self.m = m
        def forward(self, x): return self.m(input_ids=x).logits
    w = Logits(m).eval()
    x = torch.randint(0, cfg['vocab_size'], tuple(CONFIG['tokens']))
    before = status_mib('VmRSS'); ok = reset_peak_rss()
    t = time.perf_counter()
    gs = channel_groups(w, x, [m.lm_head])
    s = time.perf_counter() - t
    extra = status_mib('VmHWM') - before if ok else None
    print(json.dumps(dict(case=case, params=sum(p.numel() for p in m.parameters()), seconds=s, extra_mb=extra,
                          groups=len(gs), head_groups=sum(isinstance(g, HeadGroup) for g in gs),
                          prunable_groups=sum(g.why is None for g in gs))))

def run_case(case:str)->dict:
    runs = []
    for _ in range(CONFIG['runs']):
        r = subprocess.run([sys.executable, __file__, '--child', case], capture_output=True, text=True, check=True,
                           env={**os.environ, 'PYTHONPATH': str(HERE.parent)})
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    res = dict(runs[0]); res['seconds'] = [r['seconds'] for r in runs]; res['extra_mb'] = [r['extra_mb'] for r in runs]
    return res

def markdown(rows, load):
    out = ["`channel_groups(model, 1 x 16 tokens, [lm_head])` on models built from their configs (random weights). "
           "Attention heads are `HeadGroup`s built from the modules (q, k, v are no Torch-Pruning roots), the other groups "
           f"come from Torch-Pruning's dependency graph. `torch.set_num_threads({CONFIG['threads']})`, a fresh process per run. "
           f"Goal: <= {CONFIG['goal_seconds']} s and <= {CONFIG['goal_extra_mb']} MB extra.", "",
           "| case | parameters | seconds per run | extra RSS MB per run | groups (heads, prunable) | goal met |", "|---|---|---|---|---|---|"]
    for r in rows:
        met = max(r['seconds']) <= CONFIG['goal_seconds'] and all(e is not None and e <= CONFIG['goal_extra_mb'] for e in r['extra_mb'])
        out.append(f"| {r['case']} | {r['params']/1e6:.1f}M | {', '.join(f'{s:.2f}' for s in r['seconds'])} | "
                   f"{', '.join('-' if e is None else f'{e:.0f}' for e in r['extra_mb'])} | {r['groups']} ({r['head_groups']}, "
                   f"{r['prunable_groups']}) | {'yes' if met else 'NO'} |")
    out += ["", f"Load average of this shared 2-core machine at the start and end: {load[0]} and {load[1]}; timings grow with it.", ""]
    return "\n".join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--child', metavar='CASE', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child: return child(a.child)
    sys.path.insert(0, str(HERE))
    from _common import write_results
    t, load0 = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    rows = [run_case(c) for c in CONFIG['cases']]
    load1 = [round(x, 2) for x in os.getloadavg()]
    write_results(NAME, CONFIG, dict(cases=rows, load_average_start=load0, load_average_end=load1),
                  markdown(rows, (load0, load1)), __file__, time.perf_counter() - t)

if __name__ == '__main__': main()
