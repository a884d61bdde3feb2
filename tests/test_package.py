"""The package's metadata agrees with itself and with the code: licence, Python versions, declared dependencies."""

import ast, re, sys, tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LIB = ROOT / "fasterprune"


def _name(req: str) -> str:
    "The normalised distribution name of a requirement such as 'torch-pruning>=1.5'"
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1)).lower()


def _imports(py: Path) -> tuple[set[str], set[str]]:
    "Top-level names of the modules `py` imports: at module level, and anywhere (inside functions too)"
    tree = ast.parse(py.read_text(encoding="utf-8"))
    def names(nodes):
        res = set()
        for n in nodes:
            if isinstance(n, ast.Import): res |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and not n.level: res.add(n.module.split(".")[0])
        return res
    return names(tree.body), names(ast.walk(tree))


def _distributions(modules: set[str]) -> set[str]:
    "The distributions that provide these importable modules (standard library and the package itself left out)"
    dists = packages_distributions()
    res = set()
    for m in modules - set(sys.stdlib_module_names) - {"fasterprune", "__future__"}:
        assert m in dists, f"fasterprune imports {m!r}, which no installed distribution provides"
        res |= {_name(d) for d in dists[m]}
    return res


def test_license_file_matches():
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert "LICENSE" in PROJECT["license-files"]


def test_python_versions_agree():
    "requires-python, the version classifiers and the README say the same minimum."
    low = re.fullmatch(r">=\s*3\.(\d+)", PROJECT["requires-python"])
    assert low, PROJECT["requires-python"]
    low = int(low.group(1))
    minors = sorted(int(m) for c in PROJECT["classifiers"]
                    for m in re.findall(r"^Programming Language :: Python :: 3\.(\d+)$", c))
    assert minors and minors[0] == low, f"version classifiers 3.{minors} vs requires-python >=3.{low}"
    for f in ("README.md", "nbs/index.ipynb"):
        said = set(re.findall(r"Python 3\.(\d+) or newer", (ROOT / f).read_text(encoding="utf-8")))
        assert said == {str(low)}, f"{f} says Python 3.{said} or newer; pyproject.toml requires 3.{low}"
    assert sys.version_info >= (3, low)


def test_classifiers():
    cs = PROJECT["classifiers"]
    assert any(c.startswith("Development Status ::") for c in cs)
    assert any(c.startswith("Topic ::") for c in cs)
    assert not any(c.startswith("License ::") for c in cs), "with an SPDX `license`, License classifiers are refused"


def test_every_import_is_declared():
    """Each package that the library imports at module level is a dependency; one imported only inside a function
    (scikit-learn, for `fasterprune demo`) is a dependency or in an extra that is not `dev`."""
    deps = {_name(r) for r in PROJECT["dependencies"]}
    extras = {_name(r) for k, rs in PROJECT.get("optional-dependencies", {}).items() if k != "dev" for r in rs}
    top, anywhere = set(), set()
    for py in LIB.glob("*.py"):
        t, a = _imports(py)
        top |= t; anywhere |= a
    missing = _distributions(top) - deps
    assert not missing, f"imported at module level but not in [project] dependencies: {sorted(missing)}"
    missing = _distributions(anywhere) - deps - extras
    assert not missing, f"imported but neither a dependency nor in an extra: {sorted(missing)}"


def test_demo_extra():
    assert "scikit-learn" in {_name(r) for r in PROJECT["optional-dependencies"]["demo"]}
    assert PROJECT["scripts"]["fasterprune"].split("#")[0].strip() == "fasterprune.cli:main"


def test_nbdev_leaves_pyproject_alone():
    """nbdev-export rewrites pyproject.toml (same text, new date) unless told not to, and the Makefile then reinstalls
    the package before every target."""
    from nbdev.config import get_config
    assert get_config(ROOT).get("update_pyproject", True) is False
    assert re.search(r"(?m)^\$\(STAMP\):.*\bpyproject\.toml\b", (ROOT / "Makefile").read_text())


def test_gitignore():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"build/", "dist/"} <= set(ignored) or {"/build/", "/dist/"} <= set(ignored)
