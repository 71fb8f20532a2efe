"""Generate the one-file SDK (conventionally ``waygpt_client.py``) from ``src/waygpt/``.

Usage::

    python tools/build_single_file.py OUT [--package-dir DIR]

The client modules are the ones ``waygpt/__init__.py`` imports, plus whatever they import
from the package in turn (the testing server and the CLI are not part of the client and stay
out). They are concatenated in dependency order, which is worked out from their
``from .module import name`` lines. On the way:

* the intra-package ``from .x import ...`` lines are dropped (the names now live in the same
  namespace), after checking that every imported name is defined by some bundled module;
* ``from __future__``, standard-library and third-party imports are hoisted, merged and
  sorted at the top of the file;
* each module's docstring and ``__all__`` are dropped, and one ``__all__`` equal to the
  package's public names is written;
* the build fails if two modules bind the same top-level name, if a bundled module imports a
  third-party package other than ``requests``/``urllib3``, or if anything cannot be
  flattened safely (an aliased relative import, ``from . import module``, a relative import
  inside a function, an import cycle).

Everything else, comments included, is copied verbatim.
"""

from __future__ import annotations

import argparse
import ast
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PACKAGE_DIR = ROOT / "src" / "waygpt"
PACKAGE = "waygpt"
# The only distributions the generated file may need besides the standard library.
ALLOWED_THIRD_PARTY = frozenset({"requests", "urllib3"})
LINE_LENGTH = 100


class BuildError(Exception):
    """The package cannot be flattened into one file as it stands."""


@dataclass
class Module:
    name: str
    path: Path
    source: str
    tree: ast.Module
    deps: Set[str] = field(default_factory=set)  # bundled modules it imports from
    # Bundled modules it imports from lazily (in a function, under TYPE_CHECKING): bundled,
    # but no constraint on the order, since their names are looked up only when used.
    lazy_deps: Set[str] = field(default_factory=set)
    relative_names: List[Tuple[str, str]] = field(default_factory=list)  # (module, name)
    dropped: List[Tuple[int, int]] = field(default_factory=list)  # 1-based inclusive ranges
    # Relative imports inside a function or an `if` (imported when first needed, to keep
    # `import waygpt` cheap): replaced by `pass`, the names being module globals once bundled.
    passed: List[Tuple[int, int]] = field(default_factory=list)
    defined: Set[str] = field(default_factory=set)  # top-level names bound by its own code
    summary: str = ""


# -- reading the package -------------------------------------------------------------------


def _relative_target(node: ast.ImportFrom, where: str) -> str:
    """The bundled module a ``from .x import ...`` line reads from."""
    if node.level != 1 or not node.module or "." in node.module:
        raise BuildError(
            f"{where}: line {node.lineno}: only 'from .module import name' is supported "
            f"inside the client modules (got level {node.level}, module {node.module!r})"
        )
    return node.module


def _module_path(package_dir: Path, name: str) -> Path:
    path = package_dir / f"{name}.py"
    if not path.is_file():
        raise BuildError(
            f"{name!r} is imported by the client but {path} is not a module file "
            "(sub-packages cannot be bundled)"
        )
    return path


def _bound_names(node: ast.stmt) -> Set[str]:
    """The top-level names a statement binds (imports are handled separately)."""
    names: Set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
    elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
        # Definitions nested in module-level control flow still land in the module namespace.
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                names |= _bound_names(child)
        for handler in getattr(node, "handlers", []):
            for child in handler.body:
                names |= _bound_names(child)
    return names


def _first_line(node: ast.stmt) -> int:
    decorators: List[ast.expr] = getattr(node, "decorator_list", None) or []
    return min([node.lineno] + [d.lineno for d in decorators])


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _is_all(node: ast.stmt) -> bool:
    targets: List[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _read_module(package_dir: Path, name: str) -> Module:
    path = _module_path(package_dir, name)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    module = Module(name=name, path=path, source=source, tree=tree)
    for index, node in enumerate(tree.body):
        if index == 0 and _is_docstring(node):
            doc = ast.get_docstring(tree) or ""
            module.summary = doc.strip().splitlines()[0] if doc.strip() else ""
            module.dropped.append((node.lineno, node.end_lineno or node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            target = _relative_target(node, f"{path.name}")
            module.deps.add(target)
            for alias in node.names:
                if alias.name == "*" or (alias.asname and alias.asname != alias.name):
                    raise BuildError(
                        f"{path.name}: line {node.lineno}: 'from .{target} import "
                        f"{alias.name} as {alias.asname}' cannot be flattened; import the "
                        "name under its own name"
                    )
                module.relative_names.append((target, alias.name))
            module.dropped.append((node.lineno, node.end_lineno or node.lineno))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module.dropped.append((node.lineno, node.end_lineno or node.lineno))
        elif _is_all(node):
            module.dropped.append((_first_line(node), node.end_lineno or node.lineno))
        else:
            module.defined |= _bound_names(node)
    # A relative import elsewhere (in a function, under `if TYPE_CHECKING`) is a lazy one: its
    # module is bundled all the same, and the statement becomes `pass`.
    top_level = {id(node) for node in tree.body}
    for sub in ast.walk(tree):
        if isinstance(sub, ast.ImportFrom) and sub.level and id(sub) not in top_level:
            target = _relative_target(sub, f"{path.name}")
            end = sub.end_lineno or sub.lineno
            if any(alias.asname for alias in sub.names) or sub.col_offset == 0:
                raise BuildError(
                    f"{path.name}: line {sub.lineno}: a nested relative import must import "
                    "names under their own names, alone on its lines"
                )
            module.lazy_deps.add(target)
            module.relative_names.extend((target, alias.name) for alias in sub.names)
            module.passed.append((sub.lineno, end))
    return module


def _package_all(package_dir: Path) -> Tuple[List[str], Dict[str, str], Set[str]]:
    """``__all__`` of the package's ``__init__``, the module each name comes from, and the
    names the package imports lazily (its ``_LAZY`` dict).

    A lazy name is exported by the one-file build only if some bundled module needs its
    module anyway (the SSE parser); the async client, which needs aiohttp, is not bundled:
    the one-file build is the sync client.
    """
    init = package_dir / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
    public: Optional[List[str]] = None
    lazy: Set[str] = set()
    origins: Dict[str, str] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
        ):
            lazy = set(ast.literal_eval(node.value))
        elif isinstance(node, ast.ImportFrom) and node.level:
            target = _relative_target(node, "__init__.py")
            for alias in node.names:
                origins[alias.asname or alias.name] = target
        elif _is_all(node) and isinstance(node, ast.Assign):
            value = ast.literal_eval(node.value)
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise BuildError("__init__.py: __all__ must be a literal list of strings")
            public = list(value)
    if public is None:
        raise BuildError("__init__.py defines no __all__")
    return public, origins, lazy


def collect_modules(package_dir: Path) -> Tuple[List[Module], List[str], Set[str]]:
    """The client modules in dependency order, the public names, and the lazy ones."""
    public, origins, lazy = _package_all(package_dir)
    modules: Dict[str, Module] = {}
    pending = sorted(set(origins.values()))
    while pending:
        name = pending.pop(0)
        if name in modules:
            continue
        modules[name] = _read_module(package_dir, name)
        pending.extend(sorted((modules[name].deps | modules[name].lazy_deps) - set(modules)))
    # Kahn's algorithm; among the modules that are ready, the alphabetically first goes next,
    # so the output is deterministic.
    order: List[str] = []
    remaining = {name: set(module.deps) for name, module in modules.items()}
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps)
        if not ready:
            raise BuildError(f"import cycle between the client modules: {sorted(remaining)}")
        first = ready[0]
        order.append(first)
        del remaining[first]
        for deps in remaining.values():
            deps.discard(first)
    return [modules[name] for name in order], public, lazy


# -- imports -------------------------------------------------------------------------------


@dataclass
class Imports:
    future: Set[str] = field(default_factory=set)
    plain: Set[Tuple[str, Optional[str]]] = field(default_factory=set)  # import x [as y]
    from_: Dict[str, Set[Tuple[str, Optional[str]]]] = field(default_factory=dict)
    bound: Dict[str, Tuple[str, str]] = field(default_factory=dict)  # name -> (origin, module)

    def bind(self, name: str, origin: str, module: str) -> None:
        previous = self.bound.get(name)
        if previous is not None and previous[0] != origin:
            raise BuildError(
                f"name collision: {name!r} is imported as {previous[0]} in {previous[1]}.py "
                f"and as {origin} in {module}.py"
            )
        self.bound.setdefault(name, (origin, module))

    def add(self, node: ast.stmt, module: str) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self._check_distribution(alias.name, module)
                self.plain.add((alias.name, alias.asname))
                bound = alias.asname or alias.name.split(".")[0]
                origin = alias.name if alias.asname else alias.name.split(".")[0]
                self.bind(bound, f"module {origin}", module)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            source = node.module or ""
            if source == "__future__":
                self.future.update(alias.name for alias in node.names)
                return
            self._check_distribution(source, module)
            names = self.from_.setdefault(source, set())
            for alias in node.names:
                if alias.name == "*":
                    raise BuildError(f"{module}.py: 'from {source} import *' cannot be bundled")
                names.add((alias.name, alias.asname))
                self.bind(alias.asname or alias.name, f"{source}.{alias.name}", module)

    @staticmethod
    def _check_distribution(dotted: str, module: str) -> None:
        top = dotted.split(".")[0]
        if top == PACKAGE:
            raise BuildError(f"{module}.py imports its own package absolutely ({dotted})")
        if top not in ALLOWED_THIRD_PARTY and not _is_stdlib(top):
            raise BuildError(
                f"{module}.py imports {dotted!r}: the one-file build may only need the "
                f"standard library and {', '.join(sorted(ALLOWED_THIRD_PARTY))}"
            )


def _is_stdlib(top: str) -> bool:
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return top in names
    # Python 3.9 has no list of its standard library: accept what is importable from the
    # interpreter's own library directory.
    import importlib.util
    import sysconfig

    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    origin = Path(spec.origin or "").resolve()
    return stdlib in origin.parents and "site-packages" not in origin.parts


def _member_key(alias: Tuple[str, Optional[str]]) -> Tuple[int, str, str]:
    """isort's ``order-by-type``: CONSTANTS, then Classes, then functions and variables."""
    name = alias[0]
    if name.isupper() and len(name) > 1:
        kind = 0
    elif name[:1].isupper():
        kind = 1
    else:
        kind = 2
    return (kind, name.lower(), alias[1] or "")


def _alias_text(alias: Tuple[str, Optional[str]]) -> str:
    return f"{alias[0]} as {alias[1]}" if alias[1] else alias[0]


def _from_line(source: str, aliases: Iterable[Tuple[str, Optional[str]]]) -> str:
    names = [_alias_text(a) for a in sorted(aliases, key=_member_key)]
    line = f"from {source} import {', '.join(names)}"
    if len(line) <= LINE_LENGTH:
        return line
    body = "".join(f"    {name},\n" for name in names)
    return f"from {source} import (\n{body})"


def _render_imports(imports: Imports) -> str:
    blocks: List[str] = []
    if imports.future:
        blocks.append(_from_line("__future__", [(n, None) for n in imports.future]))

    def section(third_party: bool) -> str:
        def wanted(dotted: str) -> bool:
            return (dotted.split(".")[0] in ALLOWED_THIRD_PARTY) == third_party

        plain = sorted(
            (a for a in imports.plain if wanted(a[0])), key=lambda a: (a[0].lower(), a[1] or "")
        )
        lines = [f"import {_alias_text(a)}" for a in plain]
        for source in sorted((s for s in imports.from_ if wanted(s)), key=str.lower):
            lines.append(_from_line(source, imports.from_[source]))
        return "\n".join(lines)

    for third_party in (False, True):
        text = section(third_party)
        if text:
            blocks.append(text)
    return "\n\n".join(blocks)


# -- assembling ----------------------------------------------------------------------------


def _protected_lines(tree: ast.Module) -> Set[int]:
    """Lines inside multi-line string literals: blank lines there are data, not layout."""
    lines: Set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Constant, ast.JoinedStr)) and isinstance(
            getattr(node, "value", ""), (str, list)
        ):
            end = getattr(node, "end_lineno", None) or node.lineno
            lines.update(range(node.lineno + 1, end + 1))
    return lines


def _module_body(module: Module) -> str:
    lines = module.source.splitlines()
    dropped: Set[int] = set()
    for start, end in module.dropped:
        dropped.update(range(start, end + 1))
    passed: Dict[int, int] = {start: end for start, end in module.passed}
    protected = _protected_lines(module.tree)
    kept: List[str] = []
    blank_run = 0
    skip_to = 0
    for number, line in enumerate(lines, start=1):
        if number <= skip_to or number in dropped:
            continue
        if number in passed:
            indent = line[: len(line) - len(line.lstrip())]
            kept.append(f"{indent}pass  # bundled: {line.strip()}"[:LINE_LENGTH])
            skip_to = passed[number]
            continue
        if not line.strip() and number not in protected:
            blank_run += 1
            if blank_run > 2 or not kept:
                continue
        else:
            blank_run = 0
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept)


def _check_names(modules: List[Module], imports: Imports) -> Dict[str, str]:
    """Fail on any top-level name bound by two modules; return name -> defining module."""
    owner: Dict[str, str] = {}
    for module in modules:
        for name in sorted(module.defined):
            if name in owner:
                raise BuildError(
                    f"name collision: {name!r} is defined at top level in both "
                    f"{owner[name]}.py and {module.name}.py; rename one of them"
                )
            if name in imports.bound:
                origin, importer = imports.bound[name]
                raise BuildError(
                    f"name collision: {name!r} is defined in {module.name}.py and imported "
                    f"as {origin} in {importer}.py"
                )
            owner[name] = module.name
    available = set(owner) | set(imports.bound)
    for module in modules:
        for target, name in module.relative_names:
            if name not in available:
                raise BuildError(
                    f"{module.name}.py imports {name!r} from .{target}, but no bundled "
                    "module defines it"
                )
    return owner


def build_source(package_dir: Path = DEFAULT_PACKAGE_DIR) -> str:
    """The text of the one-file module."""
    modules, public, lazy = collect_modules(package_dir)
    imports = Imports()
    for module in modules:
        for node in module.tree.body:
            if isinstance(node, ast.Import):
                imports.add(node, module.name)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                imports.add(node, module.name)
    owner = _check_names(modules, imports)
    public = [name for name in public if name not in lazy or name in owner]
    missing = [name for name in public if name not in owner and name not in imports.bound]
    if missing:
        raise BuildError(f"public names not defined by any bundled module: {missing}")
    version = _version(modules)

    bundled = ", ".join(m.name for m in modules)
    header = (
        f'"""WayGPT Python SDK {version} in one file: a drop-in ``waygpt_client.py``.\n'
        "\n"
        "GENERATED FILE - DO NOT EDIT BY HAND. It is built by tools/build_single_file.py from\n"
        f"the waygpt {version} package; change the package and rebuild instead.\n"
        + textwrap.fill(f"Bundled modules of src/waygpt/: {bundled}.", width=88)
        + "\n"
        "\n"
        "It needs only ``requests`` and ``urllib3``. Typical use::\n"
        "\n"
        "    from waygpt_client import WayGPTClient, WayGPTError\n"
        "\n"
        "    client = WayGPTClient()  # configured from the WAYGPT_* environment variables\n"
        '    reply = client.chat_completions(messages=[{"role": "user", "content": "Hi"}])\n'
        "\n"
        "Documentation: https://github.com/waygpt/waygpt-python/tree/main/docs\n"
        '"""\n'
    )
    all_lines = "".join(f'    "{name}",\n' for name in public)
    # One blank line between the imports and __all__, as isort lays it out.
    parts = [header, _render_imports(imports) + f"\n\n__all__ = [\n{all_lines}]"]
    for module in modules:
        banner = f"# ---- waygpt/{module.name}.py"
        if module.summary:
            banner += f": {module.summary}"
        if len(banner) > LINE_LENGTH:
            banner = banner[: LINE_LENGTH - 3] + "..."
        body = _module_body(module)
        parts.append(banner + ("\n\n" + body if body else ""))
    return header + "\n" + "\n\n\n".join(part.strip("\n") for part in parts[1:]) + "\n"


def _version(modules: List[Module]) -> str:
    for module in modules:
        for node in module.tree.body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                return node.value.value
    raise BuildError("no bundled module defines __version__ as a string literal")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the one-file WayGPT SDK (waygpt_client.py) from src/waygpt/."
    )
    parser.add_argument("out", type=Path, help="file to write, e.g. dist/waygpt_client.py")
    parser.add_argument(
        "--package-dir",
        type=Path,
        default=DEFAULT_PACKAGE_DIR,
        help="the waygpt package directory (default: src/waygpt next to this script)",
    )
    args = parser.parse_args(argv)
    try:
        text = build_source(args.package_dir)
        # The result must at least be valid Python before it is written anywhere.
        compile(text, str(args.out), "exec")
    except BuildError as exc:
        print(f"build_single_file: error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
