"""The import graph of the ``fusion`` package, read from the source with ``ast`` (module-level and function-level
imports alike): what the architecture tests check dependencies and DVC stage dependencies against."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = REPO_ROOT / "fusion"


def module_file(module: str) -> Path | None:
    """The source file of a ``fusion`` module (a package's ``__init__.py``), or None."""
    parts = module.split(".")
    base = REPO_ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def all_modules() -> list[str]:
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(REPO_ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


@cache
def imports_of(module: str) -> frozenset[str]:
    """Every module (of any package) that ``module`` imports by name, anywhere in its source but under ``if
    TYPE_CHECKING:`` (a type for the checker, never run); for ``from a import b`` the module ``a.b`` when it is a
    module, else ``a``."""
    path = module_file(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if module_file(sub) is not None else target)
    return frozenset(out)


def fusion_imports(module: str) -> set[str]:
    return {m for m in imports_of(module) if (m == "fusion" or m.startswith("fusion.")) and module_file(m)}


def closure(module: str, *, runtime: bool = False) -> set[str]:
    """``module`` and every ``fusion`` module it can reach through imports; with ``runtime``, also the packages
    imported on the way (``__init__`` modules) and the code loaded without an import statement
    (:func:`registry_modules`): everything that runs."""
    dynamic = registry_modules() if runtime else {}
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        nxt = [*fusion_imports(m), *dynamic.get(m, [])]
        if runtime:
            parts = m.split(".")
            nxt += [".".join(parts[:i]) for i in range(2, len(parts))]  # fusion.a of fusion.a.b (not fusion)
        todo.extend(p for p in nxt if p not in seen and module_file(p))
    return seen


def cycles() -> list[list[str]]:
    """Import cycles among the ``fusion`` modules (each as the list of modules around it)."""
    graph = {m: fusion_imports(m) - {m} for m in all_modules()}
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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

    for v in graph:
        if v not in index:
            strong(v)
    return out


def registry_modules() -> dict[str, list[str]]:
    """Code loaded without an import statement: modules a registry imports through ``importlib`` and the
    sandbox's child program (run from its source text): the module that loads them -> the modules it loads."""
    from fusion.backends.base import _LAZY
    from fusion.levels.query.base import ROUTER_MODULES

    return {"fusion.levels.query.base": [f"fusion.levels.query.{m}" for m in ROUTER_MODULES],
            "fusion.backends.base": sorted(set(_LAZY.values())),
            "fusion.tasks.sandbox": ["fusion.tasks.sandbox_child"]}


def runner_closure(stage: str) -> set[str]:
    """Every ``fusion`` module the stage's runner (its module in its level's ``stages`` folder) can run, and the
    module of its level's parameters (their defaults decide what the stage does: the runner reads them through the
    assembled ``Params``, a type only the drivers import)."""
    from fusion.stages import HOMES, runner_module

    level = HOMES[stage].rsplit(".stages", 1)[0]
    out = closure(runner_module(stage), runtime=True)
    for m in (f"{level}.config", "fusion.core.config"):
        out |= closure(m, runtime=True)
    return out


def code_deps(stage: str) -> list[str]:
    """What ``dvc.yaml`` should list as the stage's code: the files its runner can run, a folder where it runs every
    module of it (a level's folder, the core), each file otherwise."""
    files = {module_file(m).relative_to(REPO_ROOT) for m in runner_closure(stage)}
    out: set = set()
    for f in files:
        d, top = f.parent, None
        while d != Path("."):  # the outermost folder below fusion/ all of whose modules the stage runs
            if d != Path("fusion") and all(g.relative_to(REPO_ROOT) in files for g in (REPO_ROOT / d).rglob("*.py")):
                top = d
            d = d.parent
        out.add(top or f)
    return sorted(str(x) for x in out)


def extra_code_deps(stage: str, deps: list[str]) -> list[str]:
    """The code entries of ``deps`` that hold no module the stage's runner can run (an edit there would rerun the
    stage for nothing)."""
    files = {module_file(m) for m in runner_closure(stage)}
    out = []
    for d in deps:
        p = REPO_ROOT / d
        holds = [p] if p.suffix == ".py" else list(p.rglob("*.py"))
        if not any(f in files for f in holds) or (p.is_dir() and not all(f in files for f in holds)):
            out.append(d)
    return out


def missing_code_deps(stage: str, deps: list[str]) -> list[str]:
    """The source files of the stage's runner closure that no entry of ``deps`` (files or folders, relative to
    the repository) covers."""
    covered = [REPO_ROOT / d for d in deps]
    out = []
    for m in sorted(runner_closure(stage)):
        f = module_file(m)
        if not any(f == c or c in f.parents for c in covered):
            out.append(str(f.relative_to(REPO_ROOT)))
    return out
