"""A training corpus packed small enough to carry to a lent GPU machine (JPEG canvases + exact labels, one file).

The canvases are JPEG-encoded (the labels do not depend on pixel values, so they stay exact); when the file would
exceed ``max_bytes`` a seeded random share of the training rows is dropped (validation rows are always kept) and
the summary says how many. ``main.py train --pack FILE`` writes one from the prepared corpus, ``--packed FILE``
trains on one (``training/gpu_run.sh``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from training.corpus import Corpus

LOGGER = logging.getLogger(__name__)

MIB = 1 << 20


def _encode(canvas: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(canvas), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def pack_corpus(
    corpus: Corpus,
    path: str | Path,
    max_bytes: int = 60 * MIB,
    quality: int = 65,
    seed: int = 0,
    val_split: str | None = "val_helen",
) -> dict:
    """Write ``corpus`` to one ``.npz`` of at most ``max_bytes``; returns its summary (rows kept / dropped, bytes).

    Only what training reads travels: the ``train`` rows and the real rows of ``val_split`` (None: every row).
    """
    path = Path(path)
    if val_split is not None:
        corpus = corpus.select((corpus.splits == "train") | ((corpus.splits == val_split) & (corpus.kinds == "real")))
    blobs = [_encode(c, quality) for c in corpus.canvases]
    sizes = np.array([len(b) for b in blobs], np.int64)
    # labels are stored compressed (their strings and NaN blocks shrink ~4x); counted at 1/3 to stay on the safe side
    label_bytes = (sum(getattr(corpus, name).nbytes for name in Corpus.FIELDS if name != "canvases") + 8 * len(corpus)) // 3
    per_row_labels = label_bytes / max(len(corpus), 1)
    keep = np.ones(len(corpus), bool)
    budget = max_bytes - 256 * 1024  # npz headers, summary
    total = sizes.sum() + label_bytes
    if total > budget:
        train = np.flatnonzero(corpus.splits == "train")
        order = np.random.default_rng(seed).permutation(train)
        cumulative = np.cumsum(sizes[order] + per_row_labels)
        excess = total - budget
        drop = order[: int(np.searchsorted(cumulative, excess)) + 1]
        keep[drop] = False
    rows = np.flatnonzero(keep)
    data = np.frombuffer(b"".join(blobs[i] for i in rows), np.uint8)
    offsets = np.concatenate([[0], np.cumsum(sizes[rows])])
    arrays = {name: getattr(corpus, name)[rows] for name in Corpus.FIELDS if name != "canvases"}
    summary = {
        "rows": int(len(rows)),
        "dropped_train_rows": int((~keep).sum()),
        "jpeg_quality": quality,
        "canvas": int(corpus.canvases.shape[1]),
        "corpus": corpus.select(keep).summary(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, jpeg=data, offsets=offsets, summary=np.array(json.dumps(summary)), **arrays)
    tmp.replace(path)
    summary["bytes"] = path.stat().st_size
    if summary["bytes"] > max_bytes:
        raise RuntimeError(f"{path}: {summary['bytes']} bytes exceed the limit {max_bytes}")
    LOGGER.info(
        "packed %d rows (%d training rows dropped) into %s: %.1f MiB",
        len(rows),
        summary["dropped_train_rows"],
        path,
        summary["bytes"] / MIB,
    )
    return summary


def unpack_corpus(path: str | Path) -> Corpus:
    """The :class:`Corpus` of a :func:`pack_corpus` file (canvases decoded)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed corpus not found: {path} (make it with `main.py train --pack {path}`)")
    with np.load(path, allow_pickle=False) as data:
        offsets, jpeg = data["offsets"], data["jpeg"]
        canvases = np.stack(
            [cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR) for i in range(len(offsets) - 1)]
        )
        fields = {name: data[name] for name in Corpus.FIELDS if name != "canvases" and name in data.files}
    return Corpus(canvases=canvases, **fields)


def summary_of(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["summary"]))
