"""Build docs/ and README.md from the notebooks in nbs/, offline and deterministically.

Run it as `make docs` (or `.venv/bin/python tools/build_docs.py`) from the repository root.

1. nbdev processes the notebooks into _proc/ (`nbdev-proc-nbs`, minus its attempt to download Quarto): it refreshes
   nbs/nbdev.yml and nbs/sidebar.yml from pyproject.toml [tool.nbdev], rebuilds fasterprune/_modidx.py, and runs the
   exported, import and `show_doc` cells so the API docs are rendered (of a cell that mixes imports with other code,
   only the imports). Other cells are not run: the pages show the outputs saved in the notebooks.
   Signatures show each argument as the source writes it (`readable_signatures`), not a repr of its default.
2. The processed project is copied to a scratch folder and adapted to smalldocs, which renders it without Quarto:
   each page gets the name nbdev gives it (`output-file`, e.g. 01_granularity.ipynb -> granularity.html, which is
   what nbdev's doc links point to), the sidebar follows, and the keys smalldocs does not read are dropped.
3. smalldocs renders the site; it replaces docs/. README.md is the Markdown copy of the home page (index.ipynb),
   with its pictures taken from docs/.

Nothing in the output depends on the time, the machine or the folder it was built in: CI rebuilds it and fails when
the committed docs/ or README.md differ.
"""

import json, os, re, shutil, sys, tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EPOCH = 946684800  # 2000-01-01: every staged file gets this mtime, so no date from the build machine leaks out
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{4,}>")  # the default repr of an object: differs at every run
README_NOTE = "<!-- Generated from nbs/index.ipynb by `make docs`: do not edit by hand. -->"


def run_imports_only() -> None:
    """Make nbdev run only the imports of a cell that mixes imports with other code.

    To render `show_doc`, nbdev runs the exported cells, the `show_doc` cells and every cell that imports something,
    and replaces that cell's saved outputs with new ones. For a test or plot cell that also imports (nbdev warns
    about those) that reruns training or plots out of order, or fails on a name defined in a cell it does not run.
    Running just its imports keeps the names the later cells need and keeps the outputs saved in the notebook."""
    import ast, warnings
    import nbdev.processors as P

    warnings.filterwarnings("ignore", message="Found cells containing imports and other code")
    run_cell = P.exec_show_docs.__call__
    doc_dirs = {"export", "exports", "exporti", "exec_doc"}
    imports = (ast.Import, ast.ImportFrom)

    def call(self, cell):
        if cell.cell_type != "code" or P.cell_lang(cell) != "python" or not hasattr(self, "k") or not self.nb.has_docs_:
            return run_cell(self, cell)
        if cell.directives_.keys() & doc_dirs or cell.directives_.get("eval", "").lower() == "false":
            return run_cell(self, cell)
        try: trees = cell.parsed_()
        except SyntaxError: return run_cell(self, cell)
        if not trees or all(isinstance(t, imports) for t in trees) or P._show_docs(trees): return run_cell(self, cell)
        if not P._ast_contains(trees, imports): return  # nbdev would not run it either
        src = "\n".join(ast.unparse(t) for t in trees if isinstance(t, imports))
        if src: self.k.run(src)
        if self.k.exc:
            raise Exception(f"Error in the imports of cell {cell.idx_}:\n{src}\n{type(self.k.exc).__name__}: {self.k.exc}")

    P.exec_show_docs.__call__ = call


def source_defaults(obj) -> dict:
    "{argument: its default as the source writes it} for a function or a class's `__init__`; {} without source"
    import ast, inspect, textwrap
    f = obj.__init__ if inspect.isclass(obj) else obj
    try:
        src = textwrap.dedent(inspect.getsource(f))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError): return {}
    fn = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if fn is None: return {}
    a = fn.args
    pos = a.posonlyargs + a.args
    pairs = [*zip(pos[len(pos) - len(a.defaults):], a.defaults), *zip(a.kwonlyargs, a.kw_defaults)]
    text = lambda d: re.sub(r"\s*\n\s*", " ", ast.get_source_segment(src, d) or ast.unparse(d))  # `1e-2`, not `0.01`
    return {p.arg: text(d) for p, d in pairs if d is not None}


def readable_signatures() -> None:
    """Render `show_doc` signatures as the source writes them.

    fastcore's docments gives an argument without annotation the type of its default, and shows a default by its
    repr: `schedule:function=sched_onecycle`, `include:NoneType=None`,
    `criteria:fasterprune.criteria.LargeFinal=LargeFinal()`, `layer_types:tuple=(<class 'torch.nn.modules.linear.Linear'>,
    ...)` (thousands of pixels wide). Here an argument shows only the annotation it has, and its default as written
    in the source (`criteria=large_final`, `layer_types=prunable_types`); without source, a tuple of classes shows
    their names."""
    import inspect
    import fastcore.docments as D

    def get_full(p, docs, eval_str=False):
        return D.AttrDict(docment=docs.get(p.name), anno=p.annotation, default=p.default, kind=p.kind)

    fmt_default = D._fmt_default
    def short_default(o):
        if isinstance(o, (tuple, list)) and o and all(inspect.isclass(c) for c in o):
            names = ", ".join(c.__name__ for c in o)
            return f"({names},)" if isinstance(o, tuple) and len(o) == 1 else f"({names})" if isinstance(o, tuple) else f"[{names}]"
        return fmt_default(o)

    fmt_param = D.DocmentText._fmt_param
    def fmt_param_as_written(self, nm, p):
        if not hasattr(self, "_src_defaults"): self._src_defaults = source_defaults(self.obj)
        src = self._src_defaults.get(nm)
        if src is None or p.get("default", D.empty) is D.empty: return fmt_param(self, nm, p)
        return fmt_param(self, nm, {**p, "default": D.empty}) + "=" + src

    D._get_full, D._fmt_default, D.DocmentText._fmt_param = get_full, short_default, fmt_param_as_written


def proc_nbs() -> Path:
    "Run nbdev's notebook processing into _proc/ (in this process), without its attempt to download Quarto."
    import nbdev.quarto as q

    q._ensure_quarto = lambda: None
    run_imports_only()
    readable_signatures()
    cache, _, _ = q._pre_docs(force=True, n_workers=0)  # 0: in this process, so the patch above applies
    return Path(cache)


def front_matter(nb: dict) -> tuple[dict, dict | None]:
    "The YAML front matter of a processed notebook (nbdev writes it as the first raw cell), and that cell."
    cells = nb.get("cells") or []
    if cells and cells[0]["cell_type"] == "raw":
        src = "".join(cells[0]["source"]).strip()
        if src.startswith("---"):
            return yaml.safe_load(src.strip("-\n")) or {}, cells[0]
    return {}, None


def stage(cache: Path, dest: Path, doc_url: str) -> None:
    "Copy the processed project to `dest` and adapt it to smalldocs (page names, sidebar, links, unread keys)."
    shutil.copytree(cache, dest)
    renames = {}
    own = re.compile(r"\(" + re.escape(doc_url.rstrip("/") + "/") + r"(?=[\w.-]+\.html)")
    for nb_path in sorted(dest.glob("*.ipynb")):
        # nbdev links `name` in prose to the published site; link to the page beside it instead, so the docs work
        # offline and smalldocs checks each link
        text = own.sub("(", nb_path.read_text(encoding="utf-8"))
        text = text.replace(str(ROOT) + "/", "").replace(str(ROOT), ".")  # paths in outputs of cells run by nbdev
        text, n = ADDRESS.subn(">", text)
        if n:  # e.g. a default argument without a __repr__ in a signature: it would change at every build
            print(f"build_docs: warning: {nb_path.name} shows {n} memory address(es) (` at 0x...>`); removed them. "
                  "Give those objects a __repr__.", file=sys.stderr)
        nb = json.loads(text)
        fm, cell = front_matter(nb)
        out = fm.pop("output-file", None)
        if cell is None or not out:
            continue
        cell["source"] = "---\n" + yaml.safe_dump(fm, sort_keys=True, allow_unicode=True) + "---\n"
        target = nb_path.with_name(Path(out).stem + nb_path.suffix)
        if target != nb_path and target.exists():
            sys.exit(f"build_docs: {nb_path.name} and {target.name} would both become {out}")
        nb_path.unlink()
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        renames[nb_path.name] = target.name
    side = dest / "sidebar.yml"
    if side.exists():
        text = side.read_text(encoding="utf-8")
        for old, new in renames.items():
            text = re.sub(rf"(?m)^(\s*-\s*){re.escape(old)}\s*$", rf"\g<1>{new}", text)
        side.write_text(text, encoding="utf-8")
    nbdev_yml = dest / "nbdev.yml"
    if nbdev_yml.exists():  # `format-links` asks Quarto for a Markdown copy; smalldocs writes its own (llms-txt)
        cfg = yaml.safe_load(nbdev_yml.read_text(encoding="utf-8")) or {}
        cfg.pop("format-links", None)
        nbdev_yml.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    for f in dest.rglob("*"):
        os.utime(f, (EPOCH, EPOCH))


def render(site: Path) -> Path:
    "Render the staged project with smalldocs; return its output folder."
    from smalldocs.site import build

    built = build(site, quiet=True)
    for w in built.warnings:
        print(f"smalldocs warning: {w}", file=sys.stderr)
    out = Path(built.out)
    (out / "sitemap.xml").unlink(missing_ok=True)  # it would carry build-time dates; the site does not need it
    (out / ".nojekyll").write_text("")  # GitHub Pages: publish the folder as it is
    # smalldocs names the Markdown copy of page.html page.llms.md; nbdev (module docstrings) and Quarto call it
    # page.html.md
    md_name = re.compile(r"\b([\w-]+)\.llms\.md\b")
    for f in sorted(out.rglob("*.llms.md")):
        f.rename(f.with_name(f.name.removesuffix(".llms.md") + ".html.md"))
    for f in sorted([*out.rglob("*.html.md"), out / "llms.txt", *out.rglob("*.html")]):
        if f.exists():
            text = f.read_text(encoding="utf-8")
            new = md_name.sub(r"\1.html.md", text)
            if new != text: f.write_text(new, encoding="utf-8")
    return out


def write_readme(docs: Path, doc_url: str) -> None:
    "README.md: the home page's Markdown copy, its pictures linked into docs/, its links to pages to the site."
    md = (docs / "index.html.md").read_text(encoding="utf-8")
    site = doc_url.rstrip("/") + "/"
    md = re.sub(r"(\]\(\s*<?)([\w-]+)\.html\.md", rf"\g<1>{site}\g<2>.html", md)
    rel = docs.relative_to(ROOT).as_posix()
    md = re.sub(r"(\]\(\s*<?)(index_files/)", rf"\g<1>{rel}/\g<2>", md)
    md = re.sub(r'(<img[^>]*\bsrc=")(index_files/)', rf"\g<1>{rel}/\g<2>", md)
    md = md.replace("<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->\n\n", "")
    md = re.sub(r"<style[^>]*>.*?</style>\s*", "", md, flags=re.S)   # notebook CSS (fastprogress, pandas): GitHub would show it as text
    title, _, rest = md.partition("\n")
    (ROOT / "README.md").write_text(f"{title}\n\n{README_NOTE}\n{rest}", encoding="utf-8")


def main() -> None:
    os.chdir(ROOT)
    from nbdev.config import get_config

    cfg = get_config()
    docs = Path(cfg.doc_path)
    try: cache = proc_nbs()
    except Exception as e:
        sys.exit(f"build_docs: nbdev could not process the notebooks: {e}\n"
                 "(nbdev runs the exported cells, the show_doc cells and the import cells of each notebook to render "
                 "the API docs; the error above is from one of them)")
    with tempfile.TemporaryDirectory(prefix="fasterprune-docs-") as tmp:
        site = Path(tmp) / "site"
        stage(cache, site, cfg.doc_url)
        out = render(site)
        shutil.rmtree(docs, ignore_errors=True)
        shutil.copytree(out, docs)
    write_readme(docs, cfg.doc_url)
    pages = sorted(p.name for p in docs.glob("*.html"))
    print(f"build_docs: wrote {len(pages)} page(s) to {docs.relative_to(ROOT)}/ ({', '.join(pages)}) and README.md")


if __name__ == "__main__":
    main()
