"""The package dependency rules of the README, checked on the source: drtn <- export <- training, realtime."""
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
THIRD_PARTY_ONLY_IN = {"PyQt6": ("realtime/ui", "realtime/render"), "OpenGL": ("realtime/ui", "realtime/render"), "tensorrt": ("export/backends/tensorrt_backend.py",)}


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


def test_command_line_parser_does_not_load_torch():
    """`main.py --help` and argument errors stay fast: parsing imports no torch."""
    code = "import sys, main; main.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
