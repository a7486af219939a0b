"""The user's model code: where a configured class (`model: mypkg.nets:UNet`) lives, whether it exists, and a
fingerprint of its source so that editing it rebuilds the model.

Search path (the same in the Snakefile, `check` and every job): this checkout (the `scripts` package), then the
config's `python_path` directories (resolved against the config file), then the user's own PYTHONPATH, then the
interpreter's path. The Snakefile checks a class *without running the user's code* (it finds the module file with
importlib's path finder and looks for the name in its syntax tree): DAG time runs on every Snakemake call, also for
`status`, and importing a user's module costs its imports (torch: ~1.5 s). `python -m engine_factory check` and the
stages
import it for real.

The fingerprint is the sha256 of what the class uses: its module file, the `__init__.py` files of the packages on the
way to it, and, transitively, the modules of the user's own package (the top-level package that holds the class) that
these import (found in their syntax trees, `import` statements anywhere in the file, executing nothing). A module
outside any package follows imports of modules beside it. Editing one class's module rebuilds the models whose
classes live in it or import it, not a sibling model whose class lives in another module of the package; two classes
in one file share their digest. Imports outside the package (torch, a helper directory on python_path) are not
followed: their versions are the environment's, not the zoo's.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import sys
from pathlib import Path

from .errors import FactoryError

REPO = Path(__file__).resolve().parent.parent


def search_path(python_path=()) -> list[str]:
    env = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    seen, out = set(), []
    for p in [str(REPO), *map(str, python_path), *env, *sys.path]:
        full = os.path.abspath(p or ".")
        if full not in seen:
            seen.add(full)
            out.append(full)
    return out


def job_pythonpath(python_path=()) -> str:
    """PYTHONPATH for stage jobs: the checkout, the config's python_path, then the user's own PYTHONPATH (kept)."""
    env = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    parts = []
    for p in [str(REPO), *map(str, python_path), *env]:
        if p not in parts:
            parts.append(p)
    return os.pathsep.join(parts)


def split_ref(ref: str) -> tuple[str, str]:
    module, _, attr = ref.partition(":")
    return module, attr


def locate(
    ref: str, path: list[str], *, model: str, key: str | None = None, what: str = "the model class"
) -> tuple[Path, Path | None]:
    """(module file, directory of its package or None) for `package.module:Class`, executing nothing. `key` and
    `what` name the config key and the thing in errors (default: the model's `model` key, its class)."""
    module, _ = split_ref(ref)
    key = key or f"models.{model}.model"
    locations, spec, parts = path, None, module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        spec = importlib.machinery.PathFinder.find_spec(name, locations)
        if spec is None:
            where = "python_path, PYTHONPATH and the checkout" if i == 0 else f"package '{'.'.join(parts[:i])}'"
            raise FactoryError(
                f"cannot import {what} '{ref}': no module named '{name}' (searched "
                f"{where}; put your package's parent directory in the config's python_path)",
                model=model,
                key=key,
            )
        if i < len(parts) - 1:
            if not spec.submodule_search_locations:
                raise FactoryError(f"cannot import {what} '{ref}': '{name}' is not a package", model=model, key=key)
            locations = list(spec.submodule_search_locations)
    if spec.origin in (None, "namespace"):
        raise FactoryError(
            f"cannot import {what} '{ref}': '{module}' is a namespace package without code", model=model, key=key
        )
    file = Path(spec.origin)
    if spec.submodule_search_locations:  # the module is a package itself (its __init__.py)
        return file, file.parent
    return file, (file.parent if len(parts) > 1 or (file.parent / "__init__.py").exists() else None)


def check_defined(
    ref: str, path: list[str], *, model: str, key: str | None = None, what: str = "the model class"
) -> Path:
    """The module file, after checking that it binds the class name at top level (a class, def, assignment or
    import of that name). A compiled module or a star import cannot be read this way: accepted here, and
    `check` and the freeze stage import it for real."""
    key = key or f"models.{model}.model"
    file, _ = locate(ref, path, model=model, key=key, what=what)
    _, attr = split_ref(ref)
    if file.suffix != ".py":
        return file
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (OSError, SyntaxError) as e:
        raise FactoryError(f"cannot read {what} '{ref}': {type(e).__name__}: {e}", model=model, key=key, path=str(file))
    names = _top_level_names(tree)
    if attr not in names and not names & {"*", "__getattr__"}:  # a star import or a module __getattr__: unknowable
        raise FactoryError(f"module '{split_ref(ref)[0]}' ({file}) defines no '{attr}'", model=model, key=key)
    return file


def _top_level_names(tree) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):  # e.g. try: from .fast import Net / except ImportError: ...
            inner = ast.Module(
                body=[
                    *node.body,
                    *getattr(node, "orelse", []),
                    *[s for h in getattr(node, "handlers", []) for s in h.body],
                ],
                type_ignores=[],
            )
            names |= _top_level_names(inner)
    return names


def code_fingerprint(ref: str, path: list[str], *, model: str, key: str | None = None) -> dict:
    """{"ref", "root", "files", "sha256"}: the digest of the module's file and the files of the user's package it
    imports, transitively (module docstring)."""
    from . import fingerprint

    file, package = locate(ref, path, model=model, key=key)
    if package is None:  # a module outside any package: it and the modules beside it that it imports
        root, top = file.parent, None
    else:
        top = package
        while (top.parent / "__init__.py").exists():
            top = top.parent
        root = top.parent
    found = _used_files(file, root, top)
    files = {f.relative_to(root).as_posix(): fingerprint.sha256(f) for f in sorted(found)}
    return {"ref": ref, "root": str(top or root), "files": len(files), "sha256": fingerprint.combined(files)}


def _used_files(start: Path, root: Path, top: Path | None) -> set[Path]:
    """`start`, the __init__.py files above it inside the package, and the user's modules it imports, transitively."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        f = todo.pop()
        if f in seen or not f.is_file():
            continue
        seen.add(f)
        d = f.parent
        while top is not None and d != root and (d / "__init__.py").exists():  # importing a.b runs a/__init__.py
            todo.append(d / "__init__.py")
            d = d.parent
        if f.suffix != ".py":
            continue
        try:
            tree = ast.parse(f.read_bytes(), filename=str(f))
        except (OSError, SyntaxError):  # the stage's import reports it; the file's own digest still counts
            continue
        for name in _imported_names(tree, f, root):
            todo.extend(_module_files(name, root, top))
    return seen


def _imported_names(tree, file: Path, root: Path) -> list[str]:
    """Dotted names of the modules (and `from m import x`: of m.x, which may be a module) a file imports."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: the file's package, up level-1 packages
                base = file.parent
                for _ in range(node.level - 1):
                    base = base.parent
                try:
                    prefix = ".".join(base.relative_to(root).parts)
                except ValueError:
                    continue
                mod = ".".join(p for p in (prefix, node.module or "") if p)
            else:
                mod = node.module or ""
            if mod:
                names.append(mod)
            names += [f"{mod}.{a.name}" if mod else a.name for a in node.names if a.name != "*"]
    return names


def _module_files(name: str, root: Path, top: Path | None) -> list[Path]:
    """The files of module `name` under `root`, if it belongs to the user's package (or, outside a package, lies
    beside the class's module)."""
    parts = name.split(".")
    if top is not None and parts[0] != top.name:
        return []
    if top is None and len(parts) != 1:
        return []
    base = root.joinpath(*parts)
    return [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()]


def import_class(ref: str, *, model: str, python_path=(), key: str | None = None, what: str = "the model class"):
    """Import the class (or function) for real (`check` and the stages that run the model)."""
    key = key or f"models.{model}.model"
    for p in reversed([str(p) for p in python_path]):
        if p not in sys.path:
            sys.path.insert(1, p)
    module_name, attr = split_ref(ref)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module's own code failing
        raise FactoryError(f"cannot import {what} '{ref}': {type(e).__name__}: {e}", model=model, key=key)
    if not hasattr(module, attr):
        raise FactoryError(
            f"module '{module_name}' ({getattr(module, '__file__', '?')}) defines no '{attr}'", model=model, key=key
        )
    return getattr(module, attr)
