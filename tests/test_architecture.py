"""The house rules that keep the code readable: no import cycles, no Streamlit in the engine or the charts,
no page body importing another, thin files in pages/."""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sipp_core", "ui")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Project modules a `from ... import ...` statement loads (a name may be a submodule)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


@functools.lru_cache(maxsize=2)
def import_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    """{module: project modules it imports when it is imported} for sipp_core and ui."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        deps = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                deps.update(_resolve(mod, path.name == "__init__.py", node))
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The engine, the chart builders, and the ui modules a notebook imports with them (ui/__init__.py lists them).
NOTEBOOK_UI = ("tables.py", "formulas.py", "learn_core.py", "settings.py", "runtime.py", "serve.py", "verdicts.py",
               "filters_core.py")
STREAMLIT_FREE = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "sipp_core").rglob("*.py")) + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "ui" / "charts").glob("*.py")) + [f"ui/{n}" for n in NOTEBOOK_UI] + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "ui" / "notebook").glob("*.py"))  # the notebook widgets


def _imports_streamlit(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n.split(".")[0] == "streamlit" for n in names):
            return True
    return False


def test_the_no_streamlit_list_is_complete():
    assert len([p for p in STREAMLIT_FREE if p.startswith("ui/charts/")]) >= 5  # __init__ and four builders
    assert all((ROOT / p).exists() for p in STREAMLIT_FREE)


@pytest.mark.parametrize("path", STREAMLIT_FREE)
def test_engine_and_charts_never_import_streamlit(path):
    """Neither the module nor any project module it imports (at any depth, in a function too) imports streamlit."""
    graph = import_graph(top_level_only=False)
    start = _module_name(ROOT / path)
    seen, todo = {start}, [start]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    offenders = sorted(m for m in seen if _imports_streamlit(files[m]))
    assert not offenders, f"{path} imports streamlit (through {', '.join(offenders)})"


def test_no_view_imports_another_view():
    """A page's body never imports another page's: what pages share lives in ui.guard, ui.results, ui.run_store."""
    graph = import_graph(top_level_only=False)
    views = {m for m in graph if m.startswith("ui.views.")}
    assert len(views) >= 10
    crossing = {m: sorted(graph[m] & views) for m in sorted(views) if graph[m] & views}
    assert not crossing, crossing


def test_view_finder_sees_a_crossing():
    graph = {"ui.views.a": {"ui.views.b", "ui.guard"}, "ui.views.b": set()}
    views = {m for m in graph if m.startswith("ui.views.")}
    assert {m: graph[m] & views for m in views if graph[m] & views} == {"ui.views.a": {"ui.views.b"}}


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "pages").glob("*.py")))
def test_pages_are_thin(page):
    """Each file in pages/ imports one view and hands its render() to ui.nav.entry."""
    tree = ast.parse((ROOT / "pages" / page).read_text())
    imports = sorted(n.module for n in tree.body if isinstance(n, ast.ImportFrom))
    assert len(imports) == 2 and imports[0] == "ui.nav" and imports[1].startswith("ui.views."), imports
    assert (ROOT / (imports[1].replace(".", "/") + ".py")).exists()
    calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert len(calls) == 1 and calls[0].value.func.id == "entry"


def _third_party(path: Path) -> set[str]:
    """Top-level names of the packages a module imports (anywhere in it) that are neither the stdlib nor ours."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES and n != "__future__"}


def test_the_notebook_extra_holds_what_the_notebook_side_imports():
    """`pip install -e ".[notebook]"` (docs/notebooks.md) brings every package the explorers' ui modules import: the
    library's own dependencies and the notebook extra, never the app's (vl_convert, imported by the chart builders
    for their PNG and SVG, was in the app extra only, and explore() failed without it)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = _with_requirements({_dist(r) for r in meta["dependencies"] + meta["optional-dependencies"]["notebook"]})
    graph = import_graph(top_level_only=False)
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    start = [_module_name(ROOT / p) for p in STREAMLIT_FREE if p.startswith("ui/")]
    seen, todo = set(start), list(start)
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    dists = importlib.metadata.packages_distributions()
    missing = sorted({f"{name} ({mod})" for mod in seen if mod.startswith("ui") for name in _third_party(files[mod])
                      if not {_dist(d) for d in dists.get(name, [name])} & allowed})
    assert not missing, f"imported on the notebook side, not in the notebook extra: {', '.join(missing)}"


def _with_requirements(names: set[str]) -> set[str]:
    """The distributions and everything they require when installed (not their extras): ipywidgets brings IPython."""
    out, todo = set(names), list(names)
    while todo:
        try:
            reqs = importlib.metadata.requires(todo.pop()) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in reqs:
            name = _dist(r)
            if "extra ==" not in r and name not in out:
                out.add(name)
                todo.append(name)
    return out


def _dist(requirement: str) -> str:
    """A distribution's normalised name from a requirement ("vl-convert-python>=1.6") or a name."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()
