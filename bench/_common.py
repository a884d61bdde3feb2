"""Shared conventions of the benchmark scripts in bench/.

A bench script `bench/<script>.py`:

- defines a module-level, JSON-serialisable dict `CONFIG` (everything that determines its numbers) and,
  optionally, `NAME` (the results' base name; the script's stem if absent);
- does its work under `if __name__ == '__main__':` only, so that tests can import it cheaply;
- ends with `write_results(NAME, CONFIG, results, md_body, __file__)`, which writes `bench/results/<NAME>.json`
  (config, `config_hash`, script, command, machine, versions, date, elapsed time, results) and
  `bench/results/<NAME>.md` (the same header, then `md_body`).

tests/test_bench_results.py imports every such script by path and fails when the `config_hash` of its results
differs from `config_hash(CONFIG)`: results must be regenerated whenever CONFIG changes.
"""
from __future__ import annotations
import datetime, hashlib, json, os, platform, statistics, sys, time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH/'results'

def config_hash(config:dict)->str:
    "Short sha256 of `config` as canonical JSON (sorted keys): any change of a value changes it"
    s = json.dumps(config, sort_keys=True, separators=(',', ':'), allow_nan=False)
    return hashlib.sha256(s.encode()).hexdigest()[:16]

def _cpu_model()->str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.lower().startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()

def machine()->dict:
    "Where the numbers were measured: platform, CPU model, logical cores, torch threads, GPU if one is used"
    info = dict(platform=platform.platform(), cpu=_cpu_model(), cores=os.cpu_count())
    try:
        import torch
        info['torch_threads'] = torch.get_num_threads()
        if torch.cuda.is_available(): info['gpu'] = torch.cuda.get_device_name(0)
    except ImportError: pass
    return info

def versions()->dict:
    "Versions of python and of the libraries that produce the numbers"
    from importlib.metadata import version, PackageNotFoundError
    res = dict(python=platform.python_version())
    for pkg in ('torch', 'fastai', 'fastcore', 'numpy', 'fasterprune'):
        try: res[pkg] = version(pkg)
        except PackageNotFoundError: res[pkg] = None
    try:
        import fasterprune
        res['fasterprune'] = fasterprune.__version__
        res['fasterprune_src'] = source_hash(Path(fasterprune.__file__).parent)
    except ImportError: pass
    return res

def source_hash(pkg:Path)->str:
    "Short sha256 of a package's .py sources (informational: which library code produced the numbers)"
    h = hashlib.sha256()
    for f in sorted(Path(pkg).glob('*.py')):
        if f.name != '_modidx.py': h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]

def command(script:str|Path)->str:
    "The command line that reproduces the results, from the repository root"
    rel = os.path.relpath(Path(script).resolve(), BENCH.parent)
    return ' '.join(['.venv/bin/python', rel, *sys.argv[1:]])

def md_header(res:dict)->str:
    "Markdown preamble: command, machine, versions, config and its hash"
    m, v = res['machine'], res['versions']
    lines = [f"# {res['name']}", '',
             f"Produced by `{res['command']}` on {res['date']}" +
             (f" in {res['elapsed_s']:.0f} s." if res.get('elapsed_s') is not None else '.'), '',
             f"- machine: {m['platform']}; {m['cpu']}; {m['cores']} logical cores" +
             (f"; GPU {m['gpu']}" if 'gpu' in m else ''),
             '- versions: ' + ', '.join(f'{k} {val}' for k, val in v.items()),
             f"- config hash: `{res['config_hash']}`", '',
             '<details><summary>CONFIG</summary>', '', '```json', json.dumps(res['config'], indent=1), '```', '',
             '</details>', '']
    return '\n'.join(lines)

def write_results(name:str, config:dict, results, md_body:str, script:str|Path, elapsed_s:float=None,
                  results_dir:str|Path=None)->Path:
    "Write `<name>.json` and `<name>.md` in `bench/results` with the shared header; return the JSON's path"
    d = Path(results_dir) if results_dir is not None else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    res = dict(name=name, script=os.path.relpath(Path(script).resolve(), BENCH.parent), command=command(script),
               config=config, config_hash=config_hash(config), machine=machine(), versions=versions(),
               date=datetime.datetime.now().isoformat(timespec='seconds'), elapsed_s=elapsed_s, results=results)
    (d/f'{name}.json').write_text(json.dumps(res, indent=1, allow_nan=False) + '\n')
    (d/f'{name}.md').write_text(md_header(res) + '\n' + md_body.strip() + '\n')
    return d/f'{name}.json'

def status_mib(key:str)->float:
    "A memory figure of this process from /proc/self/status (e.g. 'VmRSS', 'VmHWM', its peak), in MiB"
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'): return int(line.split()[1]) / 1024
    raise KeyError(key)

def reset_peak_rss()->bool:
    "Reset this process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it"
    try:
        with open('/proc/self/clear_refs', 'w') as f: f.write('5')
        return True
    except OSError: return False

def latency(models:dict, x, runs, warmup)->dict:
    "Median seconds per forward pass of each model on `x`, timed alternately (after `warmup` rounds)"
    import torch
    ts = {k: [] for k in models}
    with torch.inference_mode():
        for i in range(warmup + runs):
            for k, m in models.items():
                t = time.perf_counter(); m(x); dt = time.perf_counter() - t
                if i >= warmup: ts[k].append(dt)
    return {k: statistics.median(v) for k, v in ts.items()}

def declare_torchvision_ops():
    "tests/torchvision_ops.py's `declare_torchvision_ops`: this machine's torchvision C extension does not load (see there)"
    sys.path.insert(0, str(BENCH.parent/'tests'))
    from torchvision_ops import declare_torchvision_ops as f
    return f()
