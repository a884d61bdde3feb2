"""Every results file in bench/results is current with the CONFIG of the script that wrote it.

Convention (bench/_common.py): a bench script defines a module-level `CONFIG` dict (and optionally `NAME`, else its
file stem) and writes `bench/results/<NAME>.json` with a `config_hash` key and `<NAME>.md`, through
`_common.write_results`. Changing CONFIG without re-running the script makes these tests fail.
"""
import ast, importlib.util, json, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT/'bench'
sys.path.insert(0, str(BENCH))
from _common import config_hash, write_results   # noqa: E402

def defines_config(path:Path)->bool:
    "Whether the script assigns a module-level `CONFIG` (found without importing it)"
    tree = ast.parse(path.read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == 'CONFIG' for t in targets): return True
    return False

def bench_scripts(bench:Path=BENCH):
    "The bench scripts (not the `_` helpers) that define CONFIG"
    return [p for p in sorted(bench.glob('*.py')) if not p.name.startswith('_') and defines_config(p)]

def load(path:Path):
    "Import a script by path, as a module (its `__main__` block does not run)"
    if str(path.parent) not in sys.path: sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f'_bench_{path.stem}', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

def problems(script:Path, results:Path)->list:
    "What is stale or missing in the results of `script` (empty if they are current)"
    mod = load(script)
    name = getattr(mod, 'NAME', script.stem)
    js, md = results/f'{name}.json', results/f'{name}.md'
    cmd = f'.venv/bin/python bench/{script.name}'
    if not js.exists(): return [f'{js.name} is missing: run `{cmd}`']
    res = json.loads(js.read_text())
    if 'config_hash' not in res: return [f'{js.name} has no config_hash: write it with bench/_common.write_results']
    out, h = [], config_hash(mod.CONFIG)
    if res['config_hash'] != h:
        changed = sorted(k for k in set(mod.CONFIG) | set(res.get('config', {}))
                         if json.loads(json.dumps(mod.CONFIG.get(k))) != res.get('config', {}).get(k))
        out.append(f'{js.name} is stale (hash {res["config_hash"]}, CONFIG now {h}; changed: {changed}): run `{cmd}`')
    if config_hash(res.get('config', {})) != res['config_hash']:
        out.append(f'{js.name}: its config does not match its own config_hash (edited by hand?)')
    if not md.exists(): out.append(f'{md.name} is missing: run `{cmd}`')
    elif res['config_hash'] not in md.read_text(): out.append(f'{md.name} is not from the same run as {js.name}')
    return out

def test_hash_sees_every_change():
    c = dict(a=1, b=dict(c=[1, 2.5, 'x']))
    test = config_hash(c)
    assert config_hash(dict(b=dict(c=[1, 2.5, 'x']), a=1)) == test            # key order does not matter
    assert config_hash(dict(a=1, b=dict(c=[1, 2.5, 'y']))) != test            # a nested value does
    assert config_hash(dict(a=1, b=dict(c=[1, 2.5]))) != test
    assert config_hash(dict(a=1.0000001, b=dict(c=[1, 2.5, 'x']))) != test
    with pytest.raises(ValueError): config_hash(dict(a=float('nan')))

def test_checker_detects_stale_and_missing(tmp_path):
    "The check itself can fail: a fake script whose results go missing, stale, hand-edited or out of sync"
    bench, results = tmp_path/'bench', tmp_path/'bench'/'results'
    bench.mkdir()
    script = bench/'fake.py'
    script.write_text("NAME = 'fake_res'\nCONFIG = dict(n=3, lr=0.01)\nif __name__ == '__main__': raise SystemExit\n")
    assert bench_scripts(bench) == [script]
    assert 'missing' in problems(script, results)[0]
    write_results('fake_res', dict(n=3, lr=0.01), dict(acc=1.), 'body', script, 1., results_dir=results)
    assert problems(script, results) == []
    res = json.loads((results/'fake_res.json').read_text())
    assert res['config_hash'] in (results/'fake_res.md').read_text() and 'body' in (results/'fake_res.md').read_text()
    script.write_text("NAME = 'fake_res'\nCONFIG = dict(n=4, lr=0.01)\n")
    p = problems(script, results)
    assert len(p) == 1 and 'stale' in p[0] and "['n']" in p[0]
    script.write_text("NAME = 'fake_res'\nCONFIG = dict(n=3, lr=0.01)\n")
    res['config']['n'] = 5; (results/'fake_res.json').write_text(json.dumps(res))
    assert any('by hand' in s for s in problems(script, results))
    res['config']['n'] = 3; (results/'fake_res.json').write_text(json.dumps(res))
    (results/'fake_res.md').write_text('an older table')
    assert any('same run' in s for s in problems(script, results))
    (bench/'_helper.py').write_text('CONFIG = {}\n'); (bench/'noconf.py').write_text('X = 1\n')
    assert bench_scripts(bench) == [script]

def test_study_is_benchmarked():
    "The parametrised check below is not silently empty"
    assert BENCH/'study.py' in bench_scripts()

def waits_for_gpu(script:Path, results:Path)->bool:
    "A script marked `NEEDS_GPU = True` whose results were never written: they can only come from a GPU run"
    mod = load(script)
    return bool(getattr(mod, 'NEEDS_GPU', False)) and not (results/f"{getattr(mod, 'NAME', script.stem)}.json").exists()

def test_gpu_wait_is_narrow(tmp_path):
    "Only a GPU script without any results waits; stale GPU results fail like any others"
    bench = tmp_path/'bench'; bench.mkdir(); results = bench/'results'
    script = bench/'g.py'
    script.write_text("NEEDS_GPU = True\nCONFIG = dict(n=1)\n")
    assert waits_for_gpu(script, results)
    write_results('g', dict(n=1), {}, 'body', script, 1., results_dir=results)
    assert not waits_for_gpu(script, results) and problems(script, results) == []
    script.write_text("NEEDS_GPU = True\nCONFIG = dict(n=2)\n")
    assert 'stale' in problems(script, results)[0]

@pytest.mark.parametrize('script', bench_scripts(), ids=lambda p: p.name)
def test_results_current(script):
    if waits_for_gpu(script, BENCH/'results'): pytest.skip(f'{script.name} needs a GPU run (no GPU was lent yet): see its docstring')
    p = problems(script, BENCH/'results')
    assert not p, '\n'.join(p)

_jsons = sorted((BENCH/'results').glob('*.json'))

@pytest.mark.parametrize('js', _jsons, ids=lambda p: p.name)
def test_results_have_a_script(js):
    "Every results file names the script that wrote it, and that script still defines CONFIG"
    res = json.loads(js.read_text())
    assert 'config_hash' in res and 'script' in res, f'{js.name}: write it with bench/_common.write_results'
    script = ROOT/res['script']
    assert script.exists(), f'{js.name} was written by {res["script"]}, which no longer exists'
    assert script in bench_scripts(), f'{res["script"]} does not define CONFIG'
    assert getattr(load(script), 'NAME', script.stem) == js.stem, f'{res["script"]} no longer writes {js.name}'
