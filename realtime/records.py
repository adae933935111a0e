"""Per-face records of processed photos and videos: the schema, JSON and CSV serialisation, a writer.

One record per face per frame. Every record is self-contained (a JSONL line can be read alone): it names the
schema version and its source (file, size, frame rate) besides the face::

    {"schema_version": 2, "source": "clip.mp4", "source_width": 1280, "source_height": 720, "source_fps": 25.0,
     "frame_index": 12, "timestamp_ms": 480.0, "track_id": 0, "detection_score": 0.93, "presence": 0.98,
     "roi_box": [x0, y0, x1, y1], "pose": {"yaw": 10.2, "pitch": -3.1, "roll": 0.4},
     "rotation_quaternion_wxyz": [w, x, y, z], "pose_matrix_image": [[...4], ... 4],
     "identity": [... 40], "expression": [... 10],
     "landmarks_2d": [[x, y], ... 68], "landmarks_3d": [[x, y, z], ... 68], "params": [... 62]}

Image pixels, x right, y down, z depth (larger nearer); angles in degrees; ``pose_matrix_image`` maps BFM model
space to image pixels + depth (:class:`realtime.results.FacePose`); ``params`` are the raw de-normalised
62 values relative to ``roi_box`` (:class:`realtime.pipeline.FaceResult`). ``presence`` appears when the
pipeline gives one, ``blendshapes`` (name -> weight) when enabled.

Schema history: 1 = the fields from ``frame_index`` to ``params`` (no version field); 2 = adds the version,
the source fields, presence, quaternion, pose matrix, identity and expression.

CSV (``--records-format csv``): one row per face with the scalar fields, ``roi_box``, the pose, the quaternion
and the 68 landmarks as ``lm{k}_x`` / ``lm{k}_y`` columns (no ``params`` or 3D landmarks: use JSONL for those).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drtn.crop import CROP_SIZE
from realtime.results import FaceOutput

LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 2
RECORD_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class SourceInfo:
    """Where the records come from: a file name (or camera index) and its frame size and rate.

    Attributes:
        name: the source as the user gave it (path or camera index), written as a string.
        width, height: frame size in pixels.
        fps: frames per second (image folders: the source's nominal rate; single photos: 0).
    """

    name: str
    width: int
    height: int
    fps: float

    def fields(self) -> dict:
        return {
            "source": self.name,
            "source_width": int(self.width),
            "source_height": int(self.height),
            "source_fps": round(float(self.fps), 3),
        }


def _rounded(array, digits: int) -> list:
    return np.round(np.asarray(array, dtype=np.float64), digits).tolist()


def face_record(frame, face, source: SourceInfo | None = None, crop_size: int = CROP_SIZE) -> dict:
    """The record of one face (``FaceResult``) in one frame (``Frame``: ``index``, ``timestamp_ms``).

    ``source`` None leaves the source fields out (what :func:`realtime.video.face_record` wrote before).
    """
    output = FaceOutput.from_face(face, crop_size)
    record: dict = {"schema_version": SCHEMA_VERSION}
    if source is not None:
        record.update(source.fields())
    record.update(
        {
            "frame_index": int(frame.index),
            "timestamp_ms": round(float(frame.timestamp_ms), 3),
            "track_id": output.track_id,
            "detection_score": round(output.detection_score, 4),
        }
    )
    if output.presence is not None:
        record["presence"] = round(output.presence, 4)
    record.update(
        {
            "roi_box": _rounded(output.roi_box, 2),
            "pose": {"yaw": round(output.yaw, 3), "pitch": round(output.pitch, 3), "roll": round(output.roll, 3)},
            "rotation_quaternion_wxyz": _rounded(output.pose.quaternion_wxyz, 6),
            "pose_matrix_image": [[float(f"{v:.7g}") for v in row] for row in output.pose.matrix_image],
            "identity": [float(f"{v:.7g}") for v in np.asarray(output.identity, dtype=np.float64)],
            "expression": [float(f"{v:.7g}") for v in np.asarray(output.expression, dtype=np.float64)],
            "landmarks_2d": _rounded(output.landmarks_2d, 2),
            "landmarks_3d": _rounded(output.landmarks_3d, 2),
            "params": [float(f"{v:.7g}") for v in np.asarray(output.params, dtype=np.float64)],
        }
    )
    if output.blendshapes is not None:
        record["blendshapes"] = {name: round(value, 4) for name, value in output.blendshapes.items()}
    return record


CSV_SCALARS = ("schema_version", "source", "source_width", "source_height", "source_fps", "frame_index", "timestamp_ms",
               "track_id", "detection_score", "presence")  # fmt: skip
CSV_COLUMNS = (
    CSV_SCALARS
    + ("box_x0", "box_y0", "box_x1", "box_y1", "yaw", "pitch", "roll", "quat_w", "quat_x", "quat_y", "quat_z")
    + tuple(f"lm{k}_{axis}" for k in range(68) for axis in "xy")
)


def csv_row(record: dict) -> list:
    """The CSV row (:data:`CSV_COLUMNS`) of a :func:`face_record` dict; missing fields are empty."""
    row = [record.get(name, "") for name in CSV_SCALARS]
    row += (
        list(record["roi_box"])
        + [record["pose"][k] for k in ("yaw", "pitch", "roll")]
        + list(record["rotation_quaternion_wxyz"])
    )
    row += [value for point in record["landmarks_2d"] for value in point]
    return row


def csv_header() -> str:
    """The CSV header line (:data:`CSV_COLUMNS`), newline-terminated."""
    return serialize_rows([list(CSV_COLUMNS)])


def serialize_rows(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def serialize_records(records: list[dict], fmt: str = "jsonl") -> str:
    """Records (:func:`face_record`) as text: one JSON object per line (``"jsonl"``) or one CSV row per record
    (``"csv"``, without the header: :func:`csv_header`). Every record ends with a newline, so a file written
    frame by frame (``realtime.video.RecordsWriter``) only ever holds whole records."""
    if fmt == "csv":
        return serialize_rows([csv_row(record) for record in records])
    if fmt != "jsonl":
        raise ValueError(f"records format: expected one of {RECORD_FORMATS}, got {fmt!r}")
    return "".join(json.dumps(record) + "\n" for record in records)


def read_records(path: str | Path) -> list[dict]:
    """Records back from a JSONL or CSV records file (CSV values stay strings)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines() if line.strip()]
