"""The app's real-time benchmark: ``python -m realtime.ui.bench CLIP... [--seconds S] [--backend B]``.

Runs ``main.py live CLIP --seconds S --screenshot ...`` once per clip in a subprocess (needs a display: run under
``xvfb-run -a``), exactly as a user would start it (default window size, real-time playback, looping), and prints
a Markdown table from the screenshot sidecars: display and processing FPS over the second half of the run (past
start-up), frames dropped per second to keep the clip's pace, the process's CPU time per processed frame, and seconds from process start to the window, the first processed frame and the first tracked
face. The load average is printed too: on a shared machine it explains most of the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_once(clip: Path, seconds: float, backend: str, assets: str | None, extra: list[str]) -> dict:
    """One app run; returns its sidecar (raises with the app's stderr tail when it fails)."""
    with tempfile.TemporaryDirectory() as folder:
        screenshot = Path(folder) / "bench.png"
        command = [
            sys.executable,
            "main.py",
            *(["--assets", assets] if assets else []),
            "live",
            str(clip),
            "--backend",
            backend,
            "--seconds",
            str(seconds),
            "--screenshot",
            str(screenshot),
            *extra,
        ]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=seconds + 120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return json.loads(screenshot.with_suffix(".json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime.ui.bench", description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--assets", default=None)
    parser.add_argument("--repeat", type=int, default=1)
    args, extra = parser.parse_known_args(argv)
    if not os.environ.get("DISPLAY"):
        parser.error("no display: run under xvfb-run -a")
    print(f"backend {args.backend}, {args.seconds:.0f} s per run, default window (1280x720)\n")
    print(
        "| clip | size | measured (s) | display FPS | processing FPS | dropped / s | CPU ms per frame | window (s) | first frame (s) | first face (s) | load avg |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for clip in args.clips:
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            view = run_once(clip, args.seconds, args.backend, args.assets, extra)
            times = view["seconds_from_process_start"]
            steady = view["steady"] or {
                "display_fps": float("nan"),
                "processing_fps": float("nan"),
                "dropped": 0,
                "seconds": float("nan"),
                "cpu_ms_per_frame": None,
            }
            size = "x".join(str(v) for v in view.get("image_size", ["?", "?"]))
            print(
                f"| {clip.name} | {size} | {steady['seconds']:.1f} | {steady['display_fps']:.1f} | {steady['processing_fps']:.1f} | {steady['dropped'] / steady['seconds']:.1f} | {steady['cpu_ms_per_frame']} | "
                f"{times['window_shown']:.2f} | {times['first_frame'] or float('nan'):.2f} | {times['first_tracked_face'] or float('nan'):.2f} | {load:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
