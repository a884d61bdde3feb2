"""Execute a notebook in a real IPython kernel (jupyter_client + ipykernel) and save its outputs in place, as the docs show them.

Run: .venv/bin/python tools/run_notebook.py nbs/NB.ipynb && .venv/bin/nbdev-clean --fname nbs/NB.ipynb
(fastai's progress bars and fit tables are saved as HTML, as in Jupyter; one torch thread.)"""
import json, sys, os
from pathlib import Path
from jupyter_client.manager import start_new_kernel

def run(path, timeout=1200):
    path = Path(path).resolve()
    nb = json.loads(path.read_text())
    km, kc = start_new_kernel(kernel_name='python3', cwd=str(path.parent))
    try:
        kc.execute_interactive("import torch, warnings; torch.set_num_threads(1); "
                               "warnings.filterwarnings('ignore', message='IProgress not found'); "   # tqdm, no ipywidgets
                               "warnings.formatwarning = lambda m, c, *a, **k: f'{c.__name__}: {m}\\n'",  # no local paths
                               timeout=60, output_hook=lambda m: None)
        n = 0
        for cell in nb['cells']:
            if cell['cell_type'] != 'code': continue
            n += 1
            outs, ids = [], {}
            def hook(msg):
                t, c = msg['msg_type'], msg['content']
                if t == 'stream':
                    if outs and outs[-1]['output_type'] == 'stream' and outs[-1]['name'] == c['name']: outs[-1]['text'] += c['text']
                    else: outs.append(dict(output_type='stream', name=c['name'], text=c['text']))
                elif t in ('display_data', 'execute_result'):
                    o = dict(output_type=t, data=c['data'], metadata=c.get('metadata', {}))
                    if t == 'execute_result': o['execution_count'] = n
                    did = c.get('transient', {}).get('display_id')
                    if did: ids.setdefault(did, []).append(len(outs))
                    outs.append(o)
                elif t == 'update_display_data':
                    for i in ids.get(c.get('transient', {}).get('display_id'), []): outs[i]['data'] = c['data']
                elif t == 'clear_output': outs.clear(); ids.clear()
                elif t == 'error':
                    outs.append(dict(output_type='error', ename=c['ename'], evalue=c['evalue'], traceback=c['traceback']))
            reply = kc.execute_interactive(''.join(cell['source']), timeout=timeout, output_hook=hook, allow_stdin=False)
            for o in outs:
                if o['output_type'] == 'stream': o['text'] = o['text'].splitlines(True)
            cell['outputs'], cell['execution_count'] = outs, n
            if reply['content']['status'] != 'ok':
                raise RuntimeError(f"cell {cell.get('id')} failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    finally:
        kc.stop_channels(); km.shutdown_kernel(now=True)
    with open(path, 'w') as f: json.dump(nb, f, indent=1, ensure_ascii=False); f.write('\n')

if __name__ == '__main__': run(sys.argv[1])
