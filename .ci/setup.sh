#!/usr/bin/env bash
# Set up a fresh machine: system packages for Qt/OpenGL under Xvfb, a venv with torch (CPU) first, then the project
# with every extra the tests need (app: PyQt6; train: torch, scipy, matplotlib, onnx, onnxscript; test: pytest, ruff).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/apt.sh
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0          # the CPU build; must come before anything that depends on torch
.venv/bin/pip install -q -e ".[app,train,test]"
