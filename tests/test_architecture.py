"""The package's shape: folders are layers, imports point one way, and no module imports itself back.

Layers, from the top (each may import the ones below it, never one above):

- ``_cli``: the command line and the exporter (the application);
- ``testing`` and ``_emulator``: the emulator, for users' tests;
- ``contrib``: optional integrations built on the SDK's public surface;
- the SDK core: the modules at the top of the package;
- ``_transports``: how bytes reach the server, and retries;
- the foundation, ``_errors`` and ``_version``: importable from every layer.

Imports are read from the source (``ast``), including those under
``if TYPE_CHECKING:`` and inside functions: a deferred import is still a
dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "memcachier_async"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

FOUNDATION = {f"{PACKAGE}._errors", f"{PACKAGE}._version"}

#: Rank of each layer: a module may import only modules of the same or a lower rank.
LAYER_RANK = {"foundation": 0, "transports": 1, "core": 2, "contrib": 3, "testing": 3, "cli": 4}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top == "_transports":
        return "transports"
    if top == "_cli":
        return "cli"
    if top in ("testing", "_emulator"):
        return "testing"
    if top == "contrib":
        return "contrib"
    return "core"


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package's own modules that ``module`` imports (resolved to module names)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # ``from pkg import mod`` imports a module; ``from mod import name`` a name.
            targets = [f"{origin}.{alias.name}" for alias in node.names]
            targets = [t if t in known else origin for t in targets]
        else:
            continue
        for target in targets:
            if target.startswith(PACKAGE) and target in known and target != module:
                yield target


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: set(imports_of(name, path, known)) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a path that ends where it starts), or ``None``.

    A package's ``__init__`` importing its own submodules is how re-exports
    work, not a circle; edges into an ``__init__`` from below it are ignored.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if node.startswith(target + "."):  # a submodule importing its own package
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """Each import that points up the layers, as ``"a (layer) -> b (layer)"``."""
    found = []
    for module, targets in sorted(graph.items()):
        if module == PACKAGE:  # the public package re-exports every layer it owns
            continue
        for target in sorted(targets):
            if target == PACKAGE and layer_of(module) in ("cli", "testing", "contrib"):
                continue  # the layers above the SDK may use its public surface
            if LAYER_RANK[layer_of(target)] > LAYER_RANK[layer_of(module)] or (
                target == PACKAGE and layer_of(module) in ("core", "transports", "foundation")
            ):
                found.append(f"{module} ({layer_of(module)}) -> {target} ({layer_of(target)})")
    return found


def test_the_package_has_no_import_circle() -> None:
    """No module of the package imports, directly or through others, a module that imports it."""
    assert find_cycle(import_graph()) is None


def test_imports_point_down_the_layers() -> None:
    """CLI -> testing/contrib -> SDK core -> transports -> foundation; never the reverse."""
    assert wrong_way(import_graph()) == []


def test_the_layers_are_folders() -> None:
    """Transports and the command line live in their own folders, each saying what it may import."""
    graph = import_graph()
    assert {m for m in graph if layer_of(m) == "transports"} >= {
        f"{PACKAGE}._transports.retry",
        f"{PACKAGE}._transports.aiohttp",
    }
    assert f"{PACKAGE}._cli.exporter" in graph
    for folder in ("_transports", "_cli", "_emulator", "testing"):
        docstring = ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text()))
        assert docstring, folder
        assert "import" in docstring, f"{folder}/__init__.py does not say what it may import"


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"p.a": {"p.b"}, "p.b": {"p.a"}}, ["p.a", "p.b", "p.a"]),
        ({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}, ["p.a", "p.b", "p.c", "p.a"]),
        ({"p.a": {"p.b"}, "p.b": set()}, None),
        ({"p": {"p.a"}, "p.a": {"p"}}, None),  # a package and its own submodule
    ],
)
def test_the_cycle_finder_finds_circles(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    """The checker itself: it reports a circle of two or three modules and accepts a chain."""
    assert find_cycle(graph) == expected


def test_the_layer_check_refuses_an_upward_import() -> None:
    """The checker itself: a transport importing the client, or the SDK importing the CLI, is refused."""
    graph = {
        f"{PACKAGE}._transports.retry": {f"{PACKAGE}._client"},
        f"{PACKAGE}._fanout": {f"{PACKAGE}._cli.common"},
        f"{PACKAGE}._cli.common": {f"{PACKAGE}._client", f"{PACKAGE}._transports.retry"},
    }
    assert wrong_way(graph) == [
        f"{PACKAGE}._fanout (core) -> {PACKAGE}._cli.common (cli)",
        f"{PACKAGE}._transports.retry (transports) -> {PACKAGE}._client (core)",
    ]


# Private attributes of other libraries read on purpose, each checked where it is used.
FOREIGN_PRIVATE_OK: set[str] = set()


def private_reaches(source: str) -> list[str]:
    """Private attributes read on something other than ``self``/``cls`` that this
    module does not define itself (as ``def _x``, ``self._x = ...`` or a class field)."""
    tree = ast.parse(source)
    defined: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__") or node.attr in defined | FOREIGN_PRIVATE_OK:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        found.append((node.lineno, f"{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_no_module_reaches_into_another_ones_private_attributes() -> None:
    """The SDK, its transports and the CLI use each other's public names only (the emulator aside)."""
    reaches = {
        name: found
        for name, path in modules().items()
        if layer_of(name) != "testing" and (found := private_reaches(path.read_text()))
    }
    assert reaches == {}


def test_the_private_reach_check_sees_one() -> None:
    """The checker itself: ``client._direct = ...`` set from another module is reported."""
    source = "def get(client):\n    client._headers.update({})\n    return client._direct\n"
    assert private_reaches(source) == ["2: client._headers", "3: client._direct"]


# The HTTP protocol is httpcore's or aiohttp's: no module speaks it with h11,
# or drives httpcore below httpx's public transport.
PROTOCOL_MODULES = {"h11", "httpcore", "httpcore2"}


def third_party_imports(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports from outside the package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found - {PACKAGE}


def test_no_module_speaks_http_itself() -> None:
    """No module imports h11 or httpcore: the bytes on the wire are httpcore's (through
    httpx's transport) or aiohttp's."""
    speaking = {
        name for name, path in modules().items() if third_party_imports(path) & PROTOCOL_MODULES
    }
    assert speaking == set()


def declared_distributions() -> dict[str, set[str]]:
    """Each importable top-level name of the core's and the extras' dependencies,
    mapped to the dependency groups that declare it (``""`` for the core)."""
    import importlib.metadata
    import re

    try:
        import tomllib
    except ImportError:  # Python 3.10: the cli extra's tomli
        import tomli as tomllib

    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]
    groups = {"": project["dependencies"], **project["optional-dependencies"]}
    packages = importlib.metadata.packages_distributions()

    def canonical(name: str) -> str:  # PEP 503: runs of "-", "_" and "." are one "-"
        return re.sub(r"[-_.]+", "-", name).lower()

    by_distribution: dict[str, set[str]] = {}
    for top, distributions in packages.items():
        for distribution in distributions:
            by_distribution.setdefault(canonical(distribution), set()).add(top)
    found: dict[str, set[str]] = {}
    for group, requirements in groups.items():
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert name is not None
            key = canonical(name.group(0))
            # Without the distribution's own list (Python 3.10 reads only
            # top_level.txt, which namespace packages lack): its name's modules.
            guessed = {key.replace("-", "_"), key.partition("-")[0]}
            for top in by_distribution.get(key, guessed):
                found.setdefault(top, set()).add(group)
    return found


def test_every_package_the_core_imports_is_a_core_dependency() -> None:
    """The SDK core and its transports import only the standard library, httpx,
    attrs, cattrs, anyio, and (deferred, optional) an extra's package."""
    import sys

    declared = declared_distributions()
    core_layers = {"foundation", "transports", "core"}
    # typing_extensions is read under TYPE_CHECKING only (``Unpack``), never at run time.
    allowed = set(sys.stdlib_module_names) | {"typing_extensions"}
    undeclared = {}
    for name, path in modules().items():
        if layer_of(name) not in core_layers:
            continue
        missing = {top for top in third_party_imports(path) - allowed if top not in declared}
        if missing:
            undeclared[name] = missing
    assert undeclared == {}
    # And what the core imports at the top of a module is the core's own four.
    for top in ("httpx", "attrs", "cattrs", "anyio"):
        assert "" in declared[top], top


# Interpreter-wide state a library leaves to the application: the CLI (the
# application) may set it; the SDK, its transports, the emulator and testing may not.
GLOBAL_STATE_CALLS = {
    ("gc", "disable"),
    ("gc", "freeze"),
    ("gc", "unfreeze"),
    ("gc", "set_threshold"),
    ("signal", "signal"),
    ("logging", "basicConfig"),
    ("warnings", "filterwarnings"),
    ("warnings", "simplefilter"),
}


def global_state_calls(source: str) -> list[str]:
    """Calls of ``module.function`` in GLOBAL_STATE_CALLS, and ``addHandler`` on a
    logger other than the package's own (``getLogger("memcachier_async...")``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        if isinstance(func.value, ast.Name) and (func.value.id, func.attr) in GLOBAL_STATE_CALLS:
            found.append(f"{node.lineno}: {func.value.id}.{func.attr}")
        elif func.attr == "addHandler":
            target = func.value
            own = (
                isinstance(target, ast.Call)
                and isinstance(target.func, ast.Attribute)
                and target.func.attr == "getLogger"
                and target.args
                and isinstance(target.args[0], ast.Constant)
                and str(target.args[0].value).startswith(PACKAGE)
            ) or (isinstance(target, ast.Name) and target.id == "logger")
            if not own:
                found.append(f"{node.lineno}: {ast.unparse(func)}")
    return found


def test_the_library_leaves_interpreter_wide_state_alone() -> None:
    """No module outside the CLI calls gc.disable/freeze/unfreeze, signal.signal,
    logging.basicConfig or a global warnings filter, or adds a handler to a logger
    it does not own."""
    found = {
        name: calls
        for name, path in modules().items()
        if layer_of(name) != "cli" and (calls := global_state_calls(path.read_text()))
    }
    assert found == {}


def test_the_global_state_check_sees_each_call() -> None:
    """The checker itself: each forbidden call, and a handler on the root logger, is reported."""
    source = (
        "import gc, logging\n"
        "gc.disable()\n"
        "logging.basicConfig()\n"
        "logging.getLogger().addHandler(h)\n"
        "logging.getLogger('memcachier_async').addHandler(h)\n"
    )
    assert global_state_calls(source) == [
        "2: gc.disable",
        "3: logging.basicConfig",
        "4: logging.getLogger().addHandler",
    ]
