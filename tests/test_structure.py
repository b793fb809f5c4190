"""The shape of the package: the wire codec imports alone, the root is cheap, no import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def bare_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with no site-packages (-S) and only src/ on the path: the standard library alone."""
    return subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = [{str(SRC)!r}]\n" + code],
                          capture_output=True, text=True, timeout=30, env={"PYTHONPATH": ""}, cwd=ROOT)


def test_the_wire_codec_imports_with_the_standard_library_alone() -> None:
    done = bare_python(
        "import vending.protocol as p\n"
        "line = p.format_line(p.Vend(id='a1', slot=3))\n"
        "assert p.parse_line(line) == p.Vend(id='a1', slot=3), line\n"
        "ours = sorted(m for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names)\n"
        "print(ours)\n")
    assert done.returncode == 0, done.stderr
    loaded = set(ast.literal_eval(done.stdout.strip()))
    assert {m for m in loaded if not m.startswith(("vending.protocol", "__main__"))} <= {
        "vending", "vending.config"}, loaded


def test_importing_the_package_root_loads_no_flask_requests_or_runtime() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, vending, vending.protocol, vending.doctor, vending.waiting\n"
         "print(sorted(m for m in ('flask', 'requests', 'prometheus_client', 'serial', 'zeroconf',"
         " 'paho', 'vending.runtime', 'vending.web') if m in sys.modules))"],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_create_app_is_still_imported_from_the_package_root() -> None:
    done = subprocess.run([sys.executable, "-c", "from vending import Config, Runtime, create_app;"
                           " print(create_app.__name__, Runtime.__name__)"],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["create_app", "Runtime"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every import between our modules, wherever it is written: at the top, inside a function
    or under TYPE_CHECKING (a cycle hidden in a function is still two modules that need each other).
    An import of one's own parent package is left out: Python runs the parent first anyway."""
    modules = {module_name(p): p for p in SRC.rglob("*.py") if (SRC / "vending") in p.parents}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_src_has_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
