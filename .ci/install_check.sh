#!/usr/bin/env bash
# The base install as a user does it: clone the repository (committed files only), `pip install <clone>` into a
# fresh venv (no extras: no torch), then from another folder `drtn video` on the bundled clip must write one record
# per frame (55). pip may use its cache. Usage: bash .ci/install_check.sh   (DRTN_SHARED: the shared folder)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${DRTN_SHARED:-$(cd "$repo/.." && pwd)/shared}
clip="$shared/samples/video/obama.mp4"
[ -f "$clip" ] || { echo "install_check: bundled clip not found at $clip (set DRTN_SHARED)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/drtn-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

git clone -q "$repo" "$work/clone"
"$PY" -m venv "$work/v"
"$work/v/bin/pip" install -q --disable-pip-version-check "$work/clone"

mkdir "$work/elsewhere" && cd "$work/elsewhere"
if "$work/v/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "install_check: FAIL: the base install pulled in torch" >&2; exit 1
fi
"$work/v/bin/drtn" --help >/dev/null
start=$(date +%s%N)
DRTN_ASSETS="$shared/assets" "$work/v/bin/drtn" video "$clip" -o o.mp4 --records o.jsonl -q
end=$(date +%s%N)
records=$(wc -l < o.jsonl)
[ "$records" -eq 55 ] || { echo "install_check: FAIL: expected 55 records, got $records" >&2; exit 1; }
[ -s o.mp4 ] || { echo "install_check: FAIL: no video written" >&2; exit 1; }
echo "install_check: ok: pip install <clone> without torch; drtn video wrote $records records in $(( (end - start) / 1000000 )) ms"
