"""The package layout: the packages in layers (imports point down), no import cycle among trbench's
modules, a handful of modules at the top, and an __init__.py naming the public API in every folder.
Static (AST): nothing is imported."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "trbench"
CODE = [ROOT, ROOT.parent / "flows", ROOT.parent / "tasks"]
TOP_LEVEL = {"cli", "cli_prefect"}

# The layers, lowest first: a package imports only packages below it (a lazy import inside a
# function counts too); within a package, no cycle among its modules. A package or top-level module
# not listed here has no place yet: give it one.
LAYERS = ("prose", "data", "config", "backends", "engines", "measure", "suites", "run", "workloads", "report", "validation", "tr",
          "cli_prefect", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every trbench module this one imports, at any depth of the file (a lazy import inside a
    function is still an edge), with the packages whose __init__ runs on the way (not this module's
    own packages: they are already being imported when it runs)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            parts = t.split(".")
            found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & known
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return found - own - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_of(module: str) -> str:
    """The layer a module belongs to: its package under trbench, or the top-level module's own name
    (the root package, trbench/__init__.py, is not a layer: every package runs it first)."""
    return module.split(".")[1]


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    """Every edge from a package to one at its own layer or above it ("a -> b (pa imports pb)")
    besides those within one package, and every package the layers do not place."""
    rank = {name: i for i, name in enumerate(layers)}
    out = [f"{m}: package {package_of(m)!r} has no layer" for m in sorted(graph) if package_of(m) not in rank]
    for m in sorted(graph):
        for t in sorted(graph[m]):
            a, b = package_of(m), package_of(t)
            if a != b and a in rank and b in rank and rank[b] >= rank[a]:
                out.append(f"{m} -> {t} ({a} imports {b}, which is not below it)")
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the trbench modules it imports, the root package left out."""
    mods = {name: path for name, path in all_modules().items() if name != "trbench"}
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_trbench_modules():
    assert cycles(import_graph()) == []


def test_the_layer_checker_finds_an_upward_import():
    graph = {"trbench.a.x": {"trbench.b.y"}, "trbench.b.y": {"trbench.b.z"}, "trbench.b.z": set(),
             "trbench.cli": {"trbench.a.x"}}
    assert upward_imports(graph, ("b", "a", "cli")) == []
    assert upward_imports(graph, ("a", "b", "cli")) == [
        "trbench.a.x -> trbench.b.y (a imports b, which is not below it)"]
    assert upward_imports(graph, ("b", "cli")) == ["trbench.a.x: package 'a' has no layer"]


def test_every_package_imports_only_packages_below_it():
    assert upward_imports(import_graph(), LAYERS) == []


def test_a_handful_of_modules_at_the_top():
    top = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    assert top == TOP_LEVEL


def test_every_folder_is_a_package_that_names_its_api():
    for folder in [d for d in ROOT.iterdir() if d.is_dir() and any(d.glob("*.py"))]:
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder} has no __init__.py"
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init}: say what the folder is for"
        names = [n for n in tree.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)]
        assert names, f"{init}: name the public API in __all__"


def test_no_public_name_is_also_a_submodule():
    # once `pkg.name` is imported as a module, Python sets it as the package's attribute and the lazy
    # export of the same name is never asked for: `from trbench.report import publish` would give the module
    for init in ROOT.rglob("__init__.py"):
        where = [n.value for n in ast.parse(init.read_text()).body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_WHERE" for t in n.targets)]
        names = {k.value for d in where if isinstance(d, ast.Dict) for k in d.keys if isinstance(k, ast.Constant)}
        submodules = {p.stem for p in init.parent.glob("*.py")} | {d.name for d in init.parent.iterdir() if d.is_dir()}
        assert names & submodules == set(), f"{init}: {sorted(names & submodules)} name both an export and a module"


def test_no_two_modules_share_a_name():
    # a module's name says what it holds: two files called load.py (the spec's section, one step's
    # run, the report's figures) read as one job in a traceback, a grep or an import line
    by_name: dict[str, list[str]] = {}
    for p in ROOT.rglob("*.py"):
        if p.name != "__init__.py":
            by_name.setdefault(p.stem, []).append(str(p.relative_to(ROOT)))
    assert {n: sorted(ps) for n, ps in by_name.items() if len(ps) > 1} == {}


def test_every_lazy_export_names_a_module_of_its_package():
    for init in ROOT.rglob("__init__.py"):
        where = [n.value for n in ast.parse(init.read_text()).body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_WHERE" for t in n.targets)]
        modules = {v.value for d in where if isinstance(d, ast.Dict) for v in d.values if isinstance(v, ast.Constant)}
        missing = {m for m in modules if not (init.parent / f"{m}.py").is_file()}
        assert missing == set(), f"{init}: _WHERE names {sorted(missing)}, which are not modules beside it"


# A comment or docstring states the rule it stands for: a reader has the code, not the tracker or the
# design notes it was written from, and an issue's or a seed document's number says nothing to them.
CITATION = re.compile(r"\b(issue \d+|seed 0\d\d)\b", re.IGNORECASE)


# Python 3.12 splits an f-string into parts: its text is FSTRING_MIDDLE
TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}


def citations(source: str) -> list[tuple[int, str]]:
    """(line, text) of every citation in the source's comments and string literals (docstrings, and the
    descriptions the spec reference and the schemas are written from)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in TEXT_TOKENS:
            out += [(tok.start[0] + tok.string[:m.start()].count("\n"), m.group(0)) for m in CITATION.finditer(tok.string)]
    return out


def test_the_citation_finder_finds_one_in_a_comment_and_a_docstring():
    src = '"""Loads it.\n\nAs seed 002 says."""\nx = 1  # see Issue 14\ny = "an issue"  # issue: none\n'
    assert citations(src) == [(3, "seed 002"), (4, "Issue 14")]


def test_comments_state_the_rule_and_cite_no_issue_or_seed():
    found = [f"{p.relative_to(ROOT.parent)}:{line}: {text}" for d in CODE for p in sorted(d.rglob("*.py"))
             for line, text in citations(p.read_text())]
    assert found == []
