#!/usr/bin/env bash
# Train the wider real-time model (drtn_rt_wide) on a lent GPU machine, in one prepared call.
#
#   here (CPU):   bash training/gpu_run.sh pack            # -> runs/gpu_pack/ (corpus + the asset files training reads), <= 60 MiB
#   there:        device run, carry ["runs/gpu_pack"], command:
#                 bash training/gpu_run.sh train           # -> $OUT/drtn_rt_wide.pt, $OUT/metrics.jsonl, $OUT/last.pt
#   here again:   python main.py eval --checkpoint <files_at>/drtn_rt_wide.pt --baseline drtn/weights/drtn_rt.pt
#                 python main.py bench (export the new weights first) -- ship it only if per-face latency <= the peer's
#   smoke (CPU):  GPU_RUN_DEVICE=cpu GPU_RUN_STEPS=2 OUT=/tmp/gpu_smoke bash training/gpu_run.sh train
#
# The pack holds the prepared training corpus (sphere profiles; JPEG canvases, exact labels; training rows dropped
# at random if it would not fit, see training/pack.py) and copies of the BFM / teacher asset files training loads
# (runs/ is ignored by git: nothing of ../shared enters the repository). Environment knobs: GPU_RUN_MIB (pack size,
# default 46), GPU_RUN_STEPS (max steps, default: the config's
# epochs; training also stops at the config's time_budget_s, 480 s), GPU_RUN_DEVICE (default cuda), GPU_RUN_WORKERS (batch processes, default 12), GPU_RUN_CONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=runs/gpu_pack
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
case "${1:-}" in
  pack)
    ASSETS=${DRTN_ASSETS:-../shared/assets}
    mkdir -p "$PACK/assets/bfm" "$PACK/assets/teacher"
    "$PY" main.py --assets "$ASSETS" train --data "${GPU_RUN_DATA:-../shared/data}" --profile-fraction 1.0 --profile-poses sphere \
      --profiles "${GPU_RUN_PROFILES:-1,300w=2,infanface=2,youtube_faces_68=0.3}" --workers "${GPU_RUN_PACK_WORKERS:-2}" \
      ${GPU_RUN_VIDEO:+--video-records "$GPU_RUN_VIDEO"} --pack "$PACK/corpus.npz" --pack-mib "${GPU_RUN_MIB:-46}"
    for f in $("$PY" -c "from drtn.assets import BFM_FILES, TEACHER_FILE; print(*BFM_FILES, TEACHER_FILE)"); do
      cp "$ASSETS/$f" "$PACK/assets/$f"   # 9 MB: the morphable model training loads, and the teacher the asset check asks for
    done
    du -sh "$PACK"
    total=$(du -sb "$PACK" | cut -f1)
    if [ "$total" -gt $((58 * 1024 * 1024)) ]; then echo "pack is $total bytes > 58 MiB (the tree travels too, 64 MiB in all): lower GPU_RUN_MIB" >&2; exit 1; fi
    ;;
  train)
    : "${OUT:?set OUT (the device tool sets it)}"
    [ -f "$PACK/corpus.npz" ] || { echo "no $PACK/corpus.npz: run 'bash training/gpu_run.sh pack' here and carry runs/gpu_pack" >&2; exit 1; }
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
    export PYTHONUNBUFFERED=1
    steps=()
    [ -n "${GPU_RUN_STEPS:-}" ] && steps=(--max-steps "$GPU_RUN_STEPS")
    mkdir -p "$OUT" && rm -rf "$OUT/run"
    "$PY" main.py --assets "$PACK/assets" train --packed "$PACK/corpus.npz" --config "${GPU_RUN_CONFIG:-training/configs/gpu_wide.json}" \
      --device "${GPU_RUN_DEVICE:-cuda}" --loader-workers "${GPU_RUN_WORKERS:-12}" --out "$OUT/run" "${steps[@]}" \
      2>&1 | tr '\r' '\n' | { grep -v "it/s\]$" || true; } | tee "$OUT/train.log"
    "$PY" main.py train --out "$OUT/run" --package "$OUT/drtn_rt_wide.pt"
    cp "$OUT/run/metrics.jsonl" "$OUT/metrics.jsonl"
    [ -f "$OUT/run/curves.png" ] && cp "$OUT/run/curves.png" "$OUT/curves.png"
    mv "$OUT/run/last.pt" "$OUT/last.pt" && rm -rf "$OUT/run"   # resumable checkpoint (model + optimiser)
    ls -la "$OUT"
    ;;
  *)
    echo "usage: bash training/gpu_run.sh pack|train (see the comments at the top)" >&2
    exit 2
    ;;
esac
