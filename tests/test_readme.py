"""Every ```python block of README.md runs as written, in order, in one namespace, as a reader on a fresh clone runs
them (README.md is generated from nbs/index.ipynb by `make docs`: fix the notebook, then rebuild)."""

import json, os, re, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)

# Runs the blocks one after the other in one namespace; on the first failure prints which block and why, as JSON.
RUNNER = """
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
ns = {'__name__': '__main__'}
for i, src in enumerate(blocks):
    try: exec(compile(src, f'<README.md python block {i+1}>', 'exec'), ns)
    except BaseException as e:
        print(json.dumps({'block': i+1, 'error': traceback.format_exc(limit=-3)}))
        sys.exit(1)
print(json.dumps({'ran': len(blocks)}))
"""


def python_blocks(text: str) -> list[str]:
    "The ```python blocks of a Markdown text, in order"
    return [m.group(1) for m in BLOCK.finditer(text)]


def test_blocks_found():
    "The extraction finds fenced blocks, and only the python ones (the check below must not pass by finding none)."
    md = "a\n```python\nx = 1\n```\n```sh\nmake\n```\n```python\ny = x\n```\n"
    assert python_blocks(md) == ["x = 1\n", "y = x\n"]
    assert python_blocks(README.read_text(encoding="utf-8")), "README.md has no ```python block"


def test_readme_python_blocks_run():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="fasterprune-readme-") as tmp:   # a reader's folder, not the clone
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
        res = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(blocks), cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=600)
    lines = res.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    assert res.returncode == 0, (
        f"README.md python block {out.get('block', '?')} of {len(blocks)} fails when the blocks run in order "
        f"(edit nbs/index.ipynb, then `make docs`):\n{out.get('error') or res.stderr[-3000:]}")
    assert out == {"ran": len(blocks)}
