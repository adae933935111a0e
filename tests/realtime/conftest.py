"""Fixtures of the real-time tests: sample clips and images, a real backend (the 3DDFA_V2 teacher on ONNX
Runtime: the product's bundled model may not exist on a fresh clone), and a small synthetic face."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


def interrupt_on_frame(pipeline, index: int, action) -> None:
    """Make ``pipeline.process`` call ``action()`` when it starts frame ``index`` (e.g. send SIGINT mid-frame,
    or raise), then process the frame as usual."""
    real_process = pipeline.process

    def process(frame):
        if frame.index == index:
            action()
        return real_process(frame)

    pipeline.process = process


def send_ctrl_c() -> None:
    """SIGINT to this process: it arrives mid-frame."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="session")
def data_dir(shared_dir):
    """The shared landmark corpus (held-out 300W faces make the tracking benchmark's scenes)."""
    path = shared_dir / "data"
    if not (path / "300w" / "helen_testset").is_dir():
        pytest.skip("held-out 300W faces missing from the shared data folder")
    return path


@pytest.fixture(scope="session")
def samples_dir(shared_dir):
    return shared_dir / "samples"


@pytest.fixture(scope="session")
def clip_path(samples_dir):
    """A short one-face talking-head clip (78 frames, 512x512, 25 fps)."""
    path = samples_dir / "video" / "liveportrait" / "d0.mp4"
    if not path.is_file():
        pytest.skip(f"sample clip missing: {path}")
    return path


@pytest.fixture(scope="session")
def truncated_clip_path(samples_dir):
    """obama.mp4: the container claims 158 frames, only 55 decode."""
    path = samples_dir / "video" / "obama.mp4"
    if not path.is_file():
        pytest.skip(f"sample clip missing: {path}")
    return path


@pytest.fixture(scope="session")
def emma_bgr(samples_dir):
    """A photo of three faces (1901x3913)."""
    import cv2

    image = cv2.imread(str(samples_dir / "images" / "emma.jpg"))
    if image is None:
        pytest.skip("samples/images/emma.jpg missing")
    return image


@pytest.fixture(scope="session")
def clip_frames(clip_path):
    """The first 12 frames of the clip (BGR uint8)."""
    from realtime.sources import VideoFileSource

    with VideoFileSource(clip_path, max_frames=12) as source:
        return [frame for frame in source]


@dataclass(frozen=True)
class _Result:
    params: np.ndarray


class _LocalTeacher:
    """The teacher run directly, used only when ``export.backends`` cannot be imported."""

    crop_size = 120
    name = "teacher-local"

    def __init__(self, assets_dir):
        import onnxruntime as ort

        from drtn.params import ParamStats

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(assets_dir / "teacher" / "3ddfa_v2_mb05_120x120.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._stats = ParamStats.load(assets_dir / "bfm" / "param_mean_std_62d_120x120.pkl")

    def infer(self, crops_bgr):
        images = ((crops_bgr.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)
        outputs = [self._session.run(None, {"input": np.ascontiguousarray(image[None])})[0] for image in images]
        params = np.concatenate(outputs) if outputs else np.zeros((0, 62), np.float32)
        return _Result(self._stats.denormalize(params).astype(np.float32))


@pytest.fixture(scope="session")
def backend(assets_dir):
    """A real inference backend: the teacher kind of export.backends (1 thread)."""
    if not (assets_dir / "teacher" / "3ddfa_v2_mb05_120x120.onnx").is_file():
        pytest.skip("teacher model missing from the asset folder")
    try:
        from export.backends import create_backend
    except ImportError:
        return _LocalTeacher(assets_dir)
    return create_backend("teacher", assets=str(assets_dir), threads=1)


@pytest.fixture(scope="session")
def detector(assets_dir):
    from realtime.detector import FaceDetector

    with FaceDetector(assets_dir=assets_dir) as face_detector:
        yield face_detector


@pytest.fixture()
def make_pipeline(backend, morphable, assets_dir):
    """Factory of pipelines sharing the session's backend and morphable model; closed after the test."""
    from realtime.pipeline import FacePipeline, PipelineOptions

    made = []

    def make(options: PipelineOptions | None = None, **kwargs):
        options = options or PipelineOptions(assets_dir=str(assets_dir), **kwargs)
        pipeline = FacePipeline(backend, options, morphable=morphable)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


@pytest.fixture(scope="module")
def renderer_factory():
    """Build OverlayRenderers; skip the GL tests with the reason when this machine has no headless OpenGL."""
    from realtime.render import HeadlessGLError, OverlayRenderer

    created = []

    def make(width: int, height: int):
        try:
            renderer = OverlayRenderer(width, height)
        except HeadlessGLError as error:
            pytest.skip(f"no headless OpenGL here: {error}")
        created.append(renderer)
        return renderer

    yield make
    for renderer in created:
        renderer.close()
