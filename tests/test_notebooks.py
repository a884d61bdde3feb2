"Run every notebook in nbs/ as one test each, the way `nbdev-test` does (cells flagged in `tst_flags` are skipped)."

import os
from pathlib import Path

import pytest
import nbdev.test  # not `from nbdev.test import test_nb`: pytest would collect that function as a test
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parent.parent
CFG = get_config(ROOT)
NBS = sorted(Path(CFG.nbs_path).glob("*.ipynb"))


def test_notebooks_found():
    "Guard against an empty parametrization, which pytest would report as skipped rather than failed."
    assert NBS, f"no notebooks in {CFG.nbs_path}"


@pytest.mark.parametrize("nb", NBS, ids=[p.name for p in NBS])
def test_notebook(nb: Path):
    "Run `nb` with its folder as the working directory; the notebook's own traceback is on stderr when it fails."
    skip = str(CFG.tst_flags or "").split()
    force = os.environ.get("NB_FLAGS", "").split()  # e.g. NB_FLAGS=slow runs the `#| slow` cells too
    ok, secs = nbdev.test.test_nb(nb, skip_flags=skip, force_flags=force, basepath=CFG.config_path,
                                  cell_timeout=CFG.cell_timeout)
    assert ok, f"{nb.name} failed (its traceback is in the captured stderr above)"
