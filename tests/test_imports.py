"`from fasterprune.all import *` must not import torchvision or fastai.vision (heavy, and not importable everywhere)."

import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("torchvision", "fastai.vision")

PROBE = f"""
import json, sys
from fasterprune.all import *
bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r}))
print(json.dumps(bad))
"""


def test_all_imports_no_vision():
    "Import fasterprune.all in a fresh interpreter and list the forbidden modules it pulled in."
    assert (ROOT / "fasterprune" / "all.py").exists(), (
        "fasterprune/all.py does not exist yet: it is exported from the notebooks (nbs/05_export.ipynb); "
        "run `.venv/bin/nbdev-export`")
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"`from fasterprune.all import *` failed:\n{res.stderr[-3000:]}"
    bad = json.loads(res.stdout.strip().splitlines()[-1])
    assert not bad, f"`from fasterprune.all import *` imported {bad}; use fastai.basics / torch.nn instead"
