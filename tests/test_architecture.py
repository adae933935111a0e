"""The package dependency rules of the README, checked on the source: drtn <- export <- training, realtime <- the
`drtn` command (drtn_cli); no import circles; the command line is imported by nothing but its entry."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package -> our packages it may import
ALLOWED = {
    "drtn": {"drtn"},
    "export": {"drtn", "export"},
    "training": {"drtn", "export", "training"},
    "realtime": {"drtn", "export", "realtime"},
}
THIRD_PARTY_ONLY_IN = {
    "PyQt6": ("realtime/ui", "realtime/render"),
    "OpenGL": ("realtime/ui", "realtime/render"),
    "tensorrt": ("export/backends/tensorrt_backend.py",),
}


def _imports(path: Path, module_level_only: bool = False) -> set[str]:
    names = set()
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_one_way(package):
    ours = set(ALLOWED)
    for path in (REPO / package).rglob("*.py"):
        relative = path.relative_to(REPO).as_posix()
        imported = _imports(path)
        bad = (imported & ours) - ALLOWED[package]
        assert not bad, f"{relative} imports {sorted(bad)}"
        for module, homes in THIRD_PARTY_ONLY_IN.items():
            assert module not in imported or relative.startswith(homes), f"{relative} imports {module}"


def test_drtn_needs_only_torch_and_numpy():
    """At module level; optional tools (cv2 for pixel crops, matplotlib for CED plots, onnxruntime for the
    profile table) are imported inside the one function that needs them."""
    allowed = {"drtn", "torch", "numpy", "__future__"} | set(sys.stdlib_module_names)
    for path in (REPO / "drtn").rglob("*.py"):
        extra = _imports(path, module_level_only=True) - allowed
        assert not extra, f"{path.relative_to(REPO)} imports {sorted(extra)} at module level"


def _module_graph() -> dict[str, set[str]]:
    """Our modules -> our modules they import, at any level (function-level imports count: a lazy import circle is
    still a circle)."""
    modules = {}
    for package in ALLOWED:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    modules["drtn_cli"] = REPO / "drtn_cli.py"
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_no_import_circles():
    graph = _module_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_only_the_entry_imports_the_command_line():
    graph = _module_graph()
    cli_modules = {"realtime.cli", "export.cli", "training.cli", "drtn_cli"}
    importers = {module for module, deps in graph.items() if deps & cli_modules} - cli_modules
    assert importers == set()
    entry = _imports(REPO / "drtn_cli.py")
    assert {"training", "export", "realtime"} <= entry
    assert _imports(REPO / "main.py") & set(ALLOWED) == set()  # main.py: a thin entry over drtn_cli


def test_command_line_parser_does_not_load_torch():
    """`main.py --help` and argument errors stay fast: parsing imports no torch."""
    code = "import sys, main; main.build_parser(); print(sorted(m for m in ('torch', 'onnx', 'cv2', 'mediapipe') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
