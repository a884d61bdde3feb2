"""The `fasterprune` command (nbs/06a_cli.ipynb), run as a user runs it: the installed script, in a subprocess."""

import json, os, re, subprocess, sys, tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "fastai", "pandas", "sklearn", "matplotlib")   # what `--help` and `--version` must not import


def _script() -> str:
    exe = Path(sys.executable).parent / "fasterprune"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the package (`make env`, or `pip install -e .`)", pytrace=False)
    return str(exe)


def _run(*args, env=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    "Run `fasterprune ARGS` with its output going to a pipe, as in a CI log"
    return subprocess.run([_script(), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})}, **kw)


def _imported(stderr: str) -> set[str]:
    "Top-level names of the modules that `PYTHONPROFILEIMPORTTIME=1` reports as imported"
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", stderr, re.M)
    assert names, f"no import-time report in stderr:\n{stderr[-2000:]}"
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["demo", "--help"]])
def test_help_imports_nothing_heavy(args):
    "`--help` and `--version` answer from argparse alone: neither fastai nor torch is imported (they take seconds)."
    res = _run(*args, env={"PYTHONPROFILEIMPORTTIME": "1"}, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    heavy = sorted(_imported(res.stderr) & set(HEAVY))
    assert not heavy, f"`fasterprune {' '.join(args)}` imported {heavy}; import them inside the command instead"


def test_version():
    from fasterprune import __version__
    res = _run("--version", timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"fasterprune {__version__}", res


def test_help_lists_options():
    res = _run("demo", "--help", timeout=120)
    for opt in ("--sparsity", "--schedule", "--quiet", "--compact", "--out"): assert opt in res.stdout, opt


def test_schedule_names_are_demos():
    "The schedules the command offers without importing fastai are the ones `demo` takes."
    from fasterprune.cli import _SCHEDULE_NAMES
    from fasterprune.demo import _SCHEDULES
    assert _SCHEDULE_NAMES == list(_SCHEDULES)


def test_bad_schedule_is_refused():
    res = _run("demo", "--schedule", "nope", timeout=120)
    assert res.returncode == 2 and "--schedule" in res.stderr and "sched_agp" in res.stderr, res.stderr


def test_missing_scikit_learn_says_what_to_install():
    "Without scikit-learn the command stops with the extra to install, before training (or importing fastai)."
    probe = ("import sys; sys.modules['sklearn'] = None\n"    # `import sklearn` now fails, as when it is not installed
             "from fasterprune.cli import main\n"
             "rc = main(['demo', '--epochs', '1'])\n"
             "print('RESULT', rc, 'fastai' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "RESULT 1 False" in res.stdout, (res.stdout, res.stderr[-2000:])
    assert "fasterprune[demo]" in res.stderr and "scikit-learn" in res.stderr, res.stderr


def test_log_has_table_and_no_progress_bars():
    "Output to a pipe: fastai's fit table line by line and the report, no carriage returns of progress bars."
    with tempfile.TemporaryDirectory() as d:
        res = _run("demo", "--epochs", "2", "--sparsity", "50", "--out", d)
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads((Path(d) / "summary.json").read_text())["epochs"] == 2
    out = res.stdout
    assert "\r" not in out and "\r" not in res.stderr, repr(out[:500])
    lines = out.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("epoch"))
    assert lines[head].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "sparsity", "time"], lines[head]
    assert [l.split()[0] for l in lines[head + 1:head + 3]] == ["0", "1"], lines[head:head + 3]
    assert "Per-layer sparsity" in out and re.search(r"Validation accuracy \d\.\d{4}", out)


def test_quiet():
    "`--quiet`: one line, the accuracy and where the files are."
    with tempfile.TemporaryDirectory() as d:
        res = _run("demo", "--epochs", "1", "--quiet", "--out", d)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (Path(d) / "sparsity.png").exists()
    assert re.fullmatch(r"Validation accuracy \d\.\d{4}; figure, report and summary in .+/\n", res.stdout), repr(res.stdout)
