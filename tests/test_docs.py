"""Check the committed docs/ (built by `make docs`) as a reader sees them: in headless Chromium.

The site is served from 127.0.0.1; Chromium loads a small checking page from the same server that opens each doc
page in a frame and reports its headings, stylesheets and images (naturalWidth after decoding); a screenshot of
each page must not be blank. Expected pages, titles and API names come from the notebooks and from each generated
module's `__all__`, so a new notebook or a new exported name is checked without editing this file.
Screenshots are kept in out/docs-screenshots/ for a look.
"""

import ast, base64, functools, html.parser, json, re, shutil, subprocess, tempfile, threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from nbdev.config import get_config, nbpath2html

ROOT = Path(__file__).resolve().parent.parent
CFG = get_config(ROOT)
DOCS, NBS, LIB = Path(CFG.doc_path), Path(CFG.nbs_path), Path(CFG.lib_path)
SHOTS = ROOT / "out" / "docs-screenshots"
INDEX_SECTIONS = ["Install", "Quick start", "What you get", "Contributing"]
INSTALL_HINT = ("headless Chromium is needed to test the docs and it is not installed: "
                "run `apt-get update && apt-get install -y chromium` (as root), then `make test` again")
REBUILD_HINT = "run `make docs` and commit docs/ and README.md"


# ---------------------------------------------------------------- what the notebooks and modules say to expect

def _markdown_sources(nb: Path) -> list[str]:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _title(nb: Path) -> str:
    "The notebook's title, which nbdev makes the page title: `title:` in a raw front-matter cell, or its `# Title`."
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    if cells and cells[0]["cell_type"] == "raw":
        m = re.search(r"(?m)^title:\s*['\"]?(.+?)['\"]?\s*$", "".join(cells[0]["source"]))
        if m: return m.group(1)
    for src in _markdown_sources(nb):
        m = re.match(r"\s*#\s+(.+)", src)
        if m: return m.group(1).strip()
    return ""


def _hidden(cell: dict) -> bool:
    "Whether the page leaves out the cell's output (`#| hide`, `#| include: false`, `#| output: false`)."
    src = "".join(cell["source"])
    return bool(re.search(r"(?m)^#\|\s*(hide\s*$|include:\s*false|output:\s*false)", src))


def _shows_image(nb: Path) -> bool:
    "Whether a saved output that the page shows is a picture."
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return any(k.startswith("image/") for c in cells if c["cell_type"] == "code" and not _hidden(c)
               for o in c.get("outputs", []) for k in o.get("data", {}))


NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
PAGES = {nbpath2html(nb).name: nb for nb in NOTEBOOKS}  # e.g. granularity.html -> nbs/01_granularity.ipynb


def _module_api(py: Path) -> tuple[str | None, list[str], list[str]]:
    """The page of a generated module (from its `File to edit:` header), the names in its `__all__` that it
    defines with `def`/`class` (each needs its own API entry), and the ones it assigns (each must be mentioned).
    Names it imports are re-exports, checked in the module that defines them."""
    text = py.read_text(encoding="utf-8")
    m = re.search(r"File to edit: (\S+?\.ipynb)", text)
    page = nbpath2html(Path(m.group(1))).name if m else None
    tree = ast.parse(text)
    names, defs, assigned = [], set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): defs.add(node.name)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    if n.id == "__all__" and isinstance(node.value, (ast.List, ast.Tuple)): names = ast.literal_eval(node.value)
                    else: assigned.add(n.id)
    return page, [n for n in names if n in defs], [n for n in names if n in assigned and n not in defs]


MODULES = sorted(p for p in LIB.glob("*.py") if not p.name.startswith("_"))


# ---------------------------------------------------------------- serving the site and driving Chromium

CHECK_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><pre id="result">pending</pre>
<script>
const pages = %s;
function rules(sheet) { try { return sheet ? sheet.cssRules.length : 0; } catch (e) { return 0; } }
function describe(el, why) {
  const cls = typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(' ').filter(Boolean).join('.') : '';
  return `<${el.tagName.toLowerCase()}${cls}> ${why}: ${JSON.stringify((el.textContent || '').trim().slice(0, 70))}`;
}
// Content wider than the page's column that a reader cannot see: it sticks out of the column (into the margin, or
// clipped by the page), it is clipped by its own box, or it scrolls in a box whose scrollbar is not always visible.
// A box that scrolls with a visible scrollbar is fine; what is inside it is not checked further.
function cutOff(d) {
  const main = d.querySelector('main') || d.body, w = d.defaultView;
  const edge = main.getBoundingClientRect().right, bad = [];
  const walk = el => {
    for (const c of el.children) {
      const cs = w.getComputedStyle(c);
      if (cs.display === 'none' || cs.position === 'absolute' || cs.position === 'fixed') continue;
      const r = c.getBoundingClientRect(), past = Math.round(r.right - edge);
      if (past > 1) { bad.push(describe(c, `${past} px past the column`)); continue; }
      const wider = c.scrollWidth > c.clientWidth + 1;
      if (/auto|scroll/.test(cs.overflowX)) {
        // a styled scrollbar (::-webkit-scrollbar) takes room and is always shown; a default one may be an overlay
        // that shows only while scrolling (macOS, phones), which reads as cut off
        const bar = c.offsetHeight - c.clientHeight - parseFloat(cs.borderTopWidth) - parseFloat(cs.borderBottomWidth);
        const styled = w.getComputedStyle(c, '::-webkit-scrollbar').height !== 'auto';
        if (wider && !(bar >= 1 && styled))
          bad.push(describe(c, `${c.scrollWidth - c.clientWidth} px wider than its box, which has no always-visible scrollbar`));
        continue;
      }
      if (wider && /hidden|clip/.test(cs.overflowX)) { bad.push(describe(c, `${c.scrollWidth - c.clientWidth} px clipped`)); continue; }
      walk(c);
    }
  };
  walk(main);
  return bad;
}
function inspect(d) {
  const imgs = [...d.images];
  imgs.forEach(i => { if (i.loading === 'lazy') i.loading = 'eager'; });
  const waits = imgs.map(i => Promise.race([i.decode().catch(() => null), new Promise(r => setTimeout(r, 5000))]));
  return Promise.all(waits).then(() => ({
    title: d.title,
    headings: [...d.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => ({tag: h.tagName.toLowerCase(), id: h.id,
                                                                      text: h.textContent.trim()})),
    ids: [...d.querySelectorAll('[id]')].map(e => e.id),
    images: imgs.map(i => ({src: (i.getAttribute('src') || '').slice(0, 60), complete: i.complete,
                            width: i.naturalWidth, height: i.naturalHeight})),
    sheets: [...d.querySelectorAll('link[rel=stylesheet]')].map(l => ({href: l.getAttribute('href'),
                                                                      external: new URL(l.href).origin !== location.origin,
                                                                      loaded: rules(l.sheet) > 0})),
    text: d.body ? d.body.innerText : '',
    cut: cutOff(d),
  }));
}
function visit(page) {
  return new Promise(resolve => {
    const f = document.createElement('iframe');
    f.style.width = '1280px'; f.style.height = '2000px';
    f.onload = () => inspect(f.contentDocument).then(r => { f.remove(); resolve(r); },
                                                     e => { f.remove(); resolve({error: String(e)}); });
    f.src = page;
    document.body.appendChild(f);
  });
}
(async () => {
  const out = {};
  for (const p of pages) out[p] = await visit(p);
  document.getElementById('result').textContent = btoa(unescape(encodeURIComponent(JSON.stringify(out))));
})();
</script></body></html>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not exe: pytest.fail(INSTALL_HINT, pytrace=False)
    return exe


def _run_chromium(exe: str, profile: Path, *args: str, scrollbars: bool = False) -> subprocess.CompletedProcess:
    "Run headless Chromium; `scrollbars`: lay scrollbars out as a desktop browser does (the cut-off check needs them)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", *([] if scrollbars else ["--hide-scrollbars"]), f"--user-data-dir={profile}",
             "--window-size=1280,2000"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def site():
    "Serve docs/ (plus the checking page) on 127.0.0.1; yield (chromium, profile folder, base URL)."
    exe = _chromium()
    if not (DOCS / "index.html").exists(): pytest.fail(f"{DOCS}/index.html is missing: {REBUILD_HINT}", pytrace=False)
    check = (CHECK_PAGE % json.dumps(sorted(PAGES))).encode()

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/__check__.html": return super().do_GET()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(check)))
            self.end_headers()
            self.wfile.write(check)

        def log_message(self, *args): pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(DOCS)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with tempfile.TemporaryDirectory(prefix="fasterprune-chromium-") as profile:
        try: yield exe, Path(profile), f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def report(site):
    "What Chromium saw on each page, by page name."
    exe, profile, base = site
    res = _run_chromium(exe, profile, "--virtual-time-budget=60000", "--dump-dom", base + "__check__.html",
                       scrollbars=True)
    m = re.search(r'<pre id="result">([A-Za-z0-9+/=]+)</pre>', res.stdout)
    assert m, f"Chromium did not finish checking the pages (exit {res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return json.loads(base64.b64decode(m.group(1)).decode("utf-8"))


# ---------------------------------------------------------------- the checks

def test_chromium_installed():
    "CI installs Chromium (.ci/run); a machine without it fails here with the command that installs it."
    _chromium()


def test_every_notebook_has_a_page():
    missing = [f"{nb.name} -> {page}" for page, nb in PAGES.items() if not (DOCS / page).exists()]
    assert not missing, f"docs/ lacks the page of: {', '.join(missing)}: {REBUILD_HINT}"
    assert (DOCS / "search.json").exists() and (DOCS / "site_libs").is_dir(), f"docs/ is incomplete: {REBUILD_HINT}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_renders(report, page):
    "Title as in the notebook, stylesheets loaded, some text, every picture decoded, plots present when saved."
    nb = PAGES[page]
    r = report.get(page)
    assert r and "error" not in r, f"{page}: Chromium could not inspect it ({r}): {REBUILD_HINT}"
    h1 = [h["text"] for h in r["headings"] if h["tag"] == "h1"]
    assert _title(nb) in h1, f"{page}: expected the title {_title(nb)!r} of {nb.name}, found h1 {h1}: {REBUILD_HINT}"
    # the site's own stylesheets; a page with maths also links KaTeX from its CDN (smalldocs does), not checked here
    own = [s for s in r["sheets"] if not s["external"]]
    assert own and all(s["loaded"] for s in own), f"{page}: stylesheets not loaded: {own}"
    assert len(r["text"].strip()) > 100, f"{page}: almost no text rendered: {r['text'][:200]!r}"
    bad = [i for i in r["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert not bad, f"{page}: pictures that did not load: {bad}"
    if _shows_image(nb):
        assert r["images"], f"{page}: {nb.name} has saved plots/pictures but the page shows none: {REBUILD_HINT}"


@pytest.mark.parametrize("page", sorted(PAGES))
def test_nothing_cut_off(report, page):
    """At 1280 px, nothing is wider than the page's column unless it scrolls with a visible scrollbar: long code and
    signatures wrap (nbs/styles.css), wide tables scroll."""
    r = report.get(page)
    assert r and "error" not in r, f"{page}: Chromium could not inspect it ({r}): {REBUILD_HINT}"
    cut = r["cut"]
    assert not cut, (f"{page}: {len(cut)} block(s) cut off at the right at 1280 px (fix nbs/styles.css or the "
                     f"notebook, then {REBUILD_HINT}):\n" + "\n".join(cut[:15]))


def test_index_sections(report):
    "The home page (nbs/index.ipynb, also README.md) keeps its sections."
    heads = [h["text"] for h in report["index.html"]["headings"] if h["tag"] == "h2"]
    missing = [s for s in INDEX_SECTIONS if s not in heads]
    assert not missing, f"index.html lacks the sections {missing}; it has {heads}"


def test_modules_have_pages():
    "Every generated module comes from a notebook whose page is in docs/."
    for py in MODULES:
        page, _, _ = _module_api(py)
        assert page, f"{py.relative_to(ROOT)} has no `File to edit:` header: is it generated by nbdev-export?"
        assert page in PAGES, f"{py.relative_to(ROOT)} comes from a notebook that is not in nbs/ ({page})"


@pytest.mark.parametrize("py", MODULES, ids=[p.stem for p in MODULES])
def test_api_documented(report, py):
    """Each function/class in the module's `__all__` has its API entry (a heading) on the module's page; each exported
    variable is at least mentioned there."""
    page, defs, assigned = _module_api(py)
    r = report.get(page)
    assert r, f"{py.name}: its page {page} was not checked: {REBUILD_HINT}"
    heads = {h["text"].split()[0] for h in r["headings"] if h["text"]} | {h["id"] for h in r["headings"]}
    undocumented = [n for n in defs if n not in heads and n.lower() not in heads]
    assert not undocumented, (f"{page}: no API entry for {undocumented} (exported by {py.name}); a `show_doc(...)` "
                              f"cell (or nbdev's automatic one) should render it: {REBUILD_HINT}")
    unmentioned = [n for n in assigned if not re.search(rf"\b{re.escape(n)}\b", r["text"])]
    assert not unmentioned, f"{page}: exported names never mentioned on the page: {unmentioned}"


SIGNATURE = re.compile(r'<code class="sourceCode python">(.*?)</code>', re.S)
UNREADABLE = {"<class '": "a default shown by its repr", ":NoneType": "a type guessed from a None default",
              ":function": "a type guessed from a function default", " at 0x": "a memory address"}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_signatures_readable(page):
    """API signatures show arguments as the source writes them (tools/build_docs.py: readable_signatures), not
    `layer_types:tuple=(<class 'torch.nn.modules.linear.Linear'>, ...)` or `include:NoneType=None`."""
    if not (DOCS / page).exists(): pytest.fail(f"docs/{page} is missing: {REBUILD_HINT}", pytrace=False)
    text = (DOCS / page).read_text(encoding="utf-8")
    sigs = [html.unescape(re.sub(r"<[^>]+>", "", m)) for m in SIGNATURE.findall(text)]
    sigs = [s for s in sigs if re.match(r"(async )?def |class ", s)]
    cells = json.loads(PAGES[page].read_text(encoding="utf-8"))["cells"]
    if any("#| export" in "".join(c["source"]) and re.search(r"^(def|class) ", "".join(c["source"]), re.M) for c in cells):
        assert sigs, f"{page}: exports functions or classes, but no API signature was found in its HTML ({REBUILD_HINT})"
    bad = [f"{why}: {s.splitlines()[0]} ... {line.strip()}" for s in sigs for line in s.splitlines()
           for pat, why in UNREADABLE.items() if pat in line]
    assert not bad, f"{page}: unreadable API signatures ({REBUILD_HINT}):\n" + "\n".join(bad[:10])


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"): self.ids.add(a["id"])
        for k in ("href", "src"):
            if a.get(k) and not (tag == "a" and k == "src"): self.refs.append(a[k])


def _parse(page: Path) -> _Refs:
    p = _Refs()
    p.feed(page.read_text(encoding="utf-8"))
    return p


def test_internal_links():
    "Every local link and resource of every page exists, anchors included (nbdev links `name` to its API entry)."
    pages = sorted(DOCS.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    broken = []
    for page, p in parsed.items():
        for ref in p.refs:
            u = urlsplit(ref)
            if u.scheme or u.netloc or ref.startswith(("#", "data:", "mailto:", "javascript:")): continue
            target = (page.parent / unquote(u.path)).resolve() if u.path else page
            if target.is_dir(): target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.name}: {ref}")
            elif u.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(u.fragment) not in ids: broken.append(f"{page.name}: {ref} (no such anchor)")
    assert not broken, ("broken links in docs/ (a missing anchor is usually a `name` in backticks whose API entry is "
                        "not rendered: add a show_doc for it, or write it without backticks):\n" + "\n".join(broken))


@pytest.mark.parametrize("page", sorted(PAGES))
def test_screenshot_not_blank(site, page):
    "A full-window screenshot of the page has content (text, colours), not one flat colour."
    from PIL import Image, ImageStat
    exe, profile, base = site
    SHOTS.mkdir(parents=True, exist_ok=True)
    png = SHOTS / (Path(page).stem + ".png")
    png.unlink(missing_ok=True)
    res = _run_chromium(exe, profile, "--virtual-time-budget=10000", f"--screenshot={png}", base + page)
    assert png.exists(), f"no screenshot of {page} (exit {res.returncode}):\n{res.stderr[-3000:]}"
    with Image.open(png) as im:
        g = im.convert("L")
        stdev = ImageStat.Stat(g).stddev[0]
        hist = g.histogram()
    share = max(hist) / sum(hist)  # the most common grey level: the background
    assert stdev > 5 and share < 0.995, f"{page}: the screenshot looks blank (stddev {stdev:.1f}, background {share:.1%}): {png}"


def test_readme_pictures():
    "README.md (generated from nbs/index.ipynb) exists and each picture it links to is a file that decodes."
    from PIL import Image
    readme = ROOT / "README.md"
    assert readme.exists(), f"README.md is missing: {REBUILD_HINT}"
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# "), "README.md should start with the project's title"
    refs = re.findall(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)", text) + re.findall(r'<img[^>]*\bsrc="([^"]+)"', text)
    for ref in refs:
        if urlsplit(ref).scheme: continue
        f = ROOT / unquote(ref)
        assert f.exists(), f"README.md shows {ref}, which does not exist: {REBUILD_HINT}"
        with Image.open(f) as im:
            im.load()
            assert im.width > 0 and im.height > 0, f"README.md picture {ref} is empty"
