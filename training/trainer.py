"""The training loop: SGD with the paper's step schedule, checkpoints with exact resume, NaN guard, logs.

Recipe (paper, section IV.A): SGD, batch 128, lr 0.03, then 0.02 / 0.004 / 0.0008 after 30 / 40 / 60 of 70
epochs. ``TrainConfig.epochs`` scales the schedule (the milestones keep their fractions of the run), so the
same recipe runs in a few CPU hours.

Exact resume: the batch order of an epoch is a permutation seeded by (seed, epoch) and each sample's
augmentation by (seed, epoch, index) (:mod:`training.augment`); a checkpoint stores model, optimiser, epoch
and step, so resuming replays the same batches and gives bit-identical weights.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from drtn import crop
from drtn.configs import check_known_keys
from drtn.losses import DRTNLoss
from drtn.metrics import nme_2d
from drtn.model import create_model, load_model, save_checkpoint
from drtn.model.io import load_state_dict_strict, read_checkpoint
from drtn.morphable import MorphableModel
from drtn.params import NUM_PARAMS
from training.augment import CONTEXT_AUGMENTATION, AugmentConfig, make_batch
from training.corpus import Corpus

LOGGER = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or exploded; the message names the step and batch."""


@dataclass(frozen=True)
class TrainConfig:
    model: str = "drtn_rt"
    epochs: int = 70
    batch_size: int = 128
    learning_rate: float = 0.03
    # paper: x(0.02/0.03), x(0.004/0.03), x(0.0008/0.03) after 30, 40, 60 of 70 epochs
    milestones: tuple[float, ...] = (30 / 70, 40 / 70, 60 / 70)
    lr_factors: tuple[float, ...] = (0.02 / 0.03, 0.004 / 0.03, 0.0008 / 0.03)
    warmup_steps: int = 200
    schedule: str = "step"  # "step" (paper: milestones x lr_factors) | "cosine" (to 0 over the run)
    optimizer: str = "sgd"  # "sgd" (paper) | "adamw"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 10.0
    seed: int = 0
    threads: int = 2
    # loss: the paper's eq. 28 (lambdas in drtn.losses.LossConfig) plus two terms that make the CPU budget
    # converge: MSE on normalised params (3DDFA's parameter loss) and the annotated 2D landmarks.
    # weights chosen so the three parts are of one order at the start (eq. 28 total ~0.1 x 10, param MSE ~1.5,
    # lm2d ~200 px^2 x 0.005); with 100x larger geometric weights SGD's clipped steps plateaued at ~17 px RMS.
    loss_scale: float = 10.0  # eq. 28 total x this
    param_weight: float = 1.0
    landmark_2d_weight: float = 0.005  # px^2 of the 120 crop
    max_steps: int = 0  # > 0: stop after this many steps (smoke runs)
    checkpoint_every: int = 500  # steps
    log_every: int = 20
    train_splits: tuple[str, ...] = ("train",)
    val_split: str = "val_helen"
    val_limit: int = 400
    explode_factor: float = 50.0  # stop if a batch loss exceeds this x the running median
    # each epoch visits a corpus row this many times per its source (Corpus.sources); unnamed sources: 1.
    # e.g. {"300w": 3, "infanface": 4} rebalances a corpus that YouTube Faces frames dominate
    source_repeats: dict[str, int] = field(default_factory=dict)
    # and multiplied by this per kind (Corpus.kinds: real / mirror / profile / video); unnamed kinds: 1.
    # e.g. {"real": 2, "mirror": 2} keeps real photos from being outnumbered by the face profiles made from them
    kind_repeats: dict[str, int] = field(default_factory=dict)
    init_checkpoint: str = ""  # warm start: model weights from this checkpoint at step 0 (not its optimiser)
    # distillation: MSE of normalised params to the peer's prediction on the same crop, x this weight, on real
    # faces (and mirrors) turned beyond distill_min_yaw degrees, where the fitted labels are weakest (jaw contour)
    distill_weight: float = 0.0
    distill_min_yaw: float = 30.0
    # self-distillation of a mirror-averaged teacher: a frozen model of this checkpoint predicts every training crop
    # and its mirror image; the mean of p(crop) and mirror(p(flipped crop)) (drtn.mirror) is an extra target, MSE on
    # normalised params x this weight, on every row. Mirror averaging makes our models 0.1-0.3 NME points better
    # and a third less noisy frame to frame but costs twice the network; this moves that into one pass.
    mirror_teacher: str = ""
    mirror_teacher_weight: float = 0.0
    mirror_teacher_sha256: str = ""  # pins the teacher file (a run that spans sessions must see the same teacher)
    # > 0: the mirror teacher also sees the crop shifted by (+-d, +-d) crop pixels (four more views, edges
    # replicated), each with its mirror; the ten predictions, mapped back to the crop (exact: a shift moves only
    # the pose's translation), are averaged. Shift averaging (d = 5) on top of the mirror, session-4 model: HELEN
    # test 3.37 -> 3.24 NME, AFW 4.21 -> 4.03 (docs/training.md); costs 5x the teacher's passes per step.
    mirror_teacher_shift: int = 0
    # what runs the frozen teacher: "torch", or "onnxruntime" (its ONNX export, checked against torch at start;
    # ~4x faster per image on one CPU thread, so the ten views of mirror_teacher_shift cost ~0.4 s per step, not 1.6)
    mirror_teacher_runtime: str = "torch"
    # the robustness table's changes as training augmentation (training.augment.CONTEXT_AUGMENTATION)
    context_augmentation: bool = False
    device: str = "cpu"  # "cuda" on a lent GPU machine (training/gpu_run.sh)
    loader_workers: int = 0  # > 0: processes that make the (deterministic) batches ahead of the training step
    time_budget_s: float = 0.0  # > 0: stop (with a checkpoint) once training has run this long (a lent GPU's minutes)

    def __post_init__(self) -> None:
        if self.mirror_teacher_weight < 0 or (self.mirror_teacher_weight > 0) != bool(self.mirror_teacher):
            raise ValueError(
                "TrainConfig.mirror_teacher / mirror_teacher_weight: give both (a checkpoint and a weight > 0) or neither"
            )
        if (
            isinstance(self.mirror_teacher_shift, bool)
            or not isinstance(self.mirror_teacher_shift, int)
            or not 0 <= self.mirror_teacher_shift <= crop.CROP_SIZE // 8
        ):
            raise ValueError(
                f"TrainConfig.mirror_teacher_shift: expected whole crop pixels in 0..{crop.CROP_SIZE // 8}, "
                f"got {self.mirror_teacher_shift!r}"
            )
        if self.mirror_teacher_runtime not in ("torch", "onnxruntime"):
            raise ValueError(
                f"TrainConfig.mirror_teacher_runtime: expected 'torch' or 'onnxruntime', got {self.mirror_teacher_runtime!r}"
            )
        if self.mirror_teacher_shift and not self.mirror_teacher:
            raise ValueError("TrainConfig.mirror_teacher_shift: needs a mirror_teacher")
        if self.mirror_teacher and self.distill_weight > 0:
            raise ValueError("TrainConfig: distill_weight (the peer) and mirror_teacher are two targets of one term: use one")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"TrainConfig.schedule: expected 'step' or 'cosine', got {self.schedule!r}")
        if not isinstance(self.source_repeats, dict):
            raise ValueError(
                f"TrainConfig.source_repeats: expected an object of source -> repeats, got {self.source_repeats!r}"
            )
        for name in ("source_repeats", "kind_repeats"):
            table = getattr(self, name)
            if not isinstance(table, dict):
                raise ValueError(f"TrainConfig.{name}: expected an object of name -> repeats, got {table!r}")
            for key, repeats in table.items():
                if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 0:
                    raise ValueError(f"TrainConfig.{name}[{key!r}]: expected an integer >= 0, got {repeats!r}")

    @staticmethod
    def from_dict(values: dict) -> "TrainConfig":
        check_known_keys(TrainConfig, values)
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return TrainConfig(**converted)


def learning_rate_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The paper's step schedule (or a cosine decay) with linear warmup."""
    epoch = step / max(steps_per_epoch, 1)
    lr = config.learning_rate
    if config.schedule == "cosine":
        lr = 0.5 * config.learning_rate * (1 + math.cos(math.pi * min(epoch / max(config.epochs, 1), 1.0)))
    else:
        for milestone, factor in zip(config.milestones, config.lr_factors):
            if epoch >= milestone * config.epochs:
                lr = config.learning_rate * factor
    if step < config.warmup_steps:
        lr *= (step + 1) / config.warmup_steps
    return lr


@dataclass
class Trainer:
    config: TrainConfig
    corpus: Corpus
    morphable: MorphableModel
    out_dir: Path
    augment: AugmentConfig | None = None

    def __post_init__(self) -> None:
        if self.augment is None:
            self.augment = AugmentConfig(context=CONTEXT_AUGMENTATION if self.config.context_augmentation else ())
        torch.set_num_threads(self.config.threads)
        torch.manual_seed(self.config.seed)
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # channels_last: ~1.4x faster convolutions on CPU (measured on drtn_rt)
        self.device = torch.device(self.config.device)
        self.model = create_model(self.config.model).to(self.device, memory_format=torch.channels_last)
        self.loss = DRTNLoss(self.morphable).to(self.device)
        self.stats = self.morphable.stats
        if self.config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(
                self.model.parameters(),
                lr=self.config.learning_rate,
                momentum=self.config.momentum,
                weight_decay=self.config.weight_decay,
                nesterov=True,
            )
        elif self.config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(
                self.model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
            )
        else:
            raise ValueError(f"TrainConfig.optimizer: expected 'sgd' or 'adamw', got {self.config.optimizer!r}")
        rows = np.flatnonzero(np.isin(self.corpus.splits, self.config.train_splits))
        repeats = np.array(
            [
                self.config.source_repeats.get(str(s), 1) * self.config.kind_repeats.get(str(k), 1)
                for s, k in zip(self.corpus.sources[rows], self.corpus.kinds[rows])
            ],
            dtype=np.int64,
        )
        # one epoch = every row `repeats` times; a visit is keyed by (row, copy) so copies get their own augmentation
        self.train_indices = np.repeat(rows, repeats)
        self.train_copies = np.concatenate([np.arange(r) for r in repeats]) if len(rows) else np.zeros(0, np.int64)
        if len(self.train_indices) < self.config.batch_size:
            raise ValueError(f"only {len(self.train_indices)} training faces for batch size {self.config.batch_size}")
        self.steps_per_epoch = len(self.train_indices) // self.config.batch_size
        self.total_steps = self.steps_per_epoch * self.config.epochs
        if self.config.max_steps:
            self.total_steps = min(self.total_steps, self.config.max_steps)
        # per-row distillation weight (0 where the peer's target is not used)
        real = np.isin(self.corpus.kinds, ("real", "mirror")) & self.corpus.has_teacher
        turned = np.abs(self.corpus.yaw_degrees) >= self.config.distill_min_yaw
        self.distill_rows = np.where(real & turned, self.config.distill_weight, 0.0).astype(np.float32)
        LOGGER.info(
            "distillation on %d corpus rows (weight %g)", int((self.distill_rows > 0).sum()), self.config.distill_weight
        )
        self.step = 0
        self.history: list[float] = []
        self.corpus_fingerprint = self.corpus.fingerprint()
        if self.config.init_checkpoint:
            state = read_checkpoint(self.config.init_checkpoint, map_location=self.device)
            load_state_dict_strict(self.model, state["state_dict"], self.config.init_checkpoint)
            LOGGER.info("warm start from %s", self.config.init_checkpoint)
        self.mirror_teacher, self.teacher_session = None, None
        if self.config.mirror_teacher:
            self.mirror_teacher, self.mirror_affine = self._load_mirror_teacher(self.config.mirror_teacher)
            if self.config.mirror_teacher_runtime == "onnxruntime":
                self.teacher_session = self._teacher_onnx_session(self.mirror_teacher)

    def _load_mirror_teacher(self, path: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]:
        """A frozen model of ``path`` and the mirror of de-normalised params as (matrix.T, offset) tensors."""
        from drtn.assets import file_sha256
        from drtn.mirror import MirrorMap

        expected = self.config.mirror_teacher_sha256
        if expected and Path(path).is_file() and file_sha256(Path(path)) != expected:
            raise ValueError(
                f"{path}: not the mirror teacher this run was configured with (SHA-256 {expected[:12]}...): "
                "restore that file (e.g. from the git history of drtn/weights/drtn_rt.pt)"
            )
        teacher = load_model(path, map_location=self.device).to(self.device, memory_format=torch.channels_last).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        matrix, offset = MirrorMap.from_morphable(self.morphable, crop_size=crop.CROP_SIZE).affine()
        LOGGER.info("mirror-averaged teacher %s (weight %g)", path, self.config.mirror_teacher_weight)
        affine = (
            torch.from_numpy(matrix.T.astype(np.float32)).to(self.device),
            torch.from_numpy(offset.astype(np.float32)).to(self.device),
        )
        return teacher, affine

    def _teacher_onnx_session(self, teacher: torch.nn.Module):
        """An ONNX Runtime session (1 thread) of the teacher's export: normalised images -> de-normalised params."""
        from export.backends.onnxruntime_backend import ort_session
        from export.onnx_export import export_onnx

        path = self.out_dir / "mirror_teacher.onnx"
        export_onnx(teacher.to(memory_format=torch.contiguous_format).cpu(), path, stats=self.stats)
        teacher.to(self.device, memory_format=torch.channels_last)
        LOGGER.info("mirror teacher runs in ONNX Runtime (%s)", path)
        return ort_session(path, threads=1)

    def _teacher_params(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 62) de-normalised params of the frozen teacher on normalised images (N, 3, S, S)."""
        if self.teacher_session is None:
            return self.stats.denormalize(self.mirror_teacher(images))
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (params,) = self.teacher_session.run(None, {self.teacher_session.get_inputs()[0].name: array})
        return torch.from_numpy(params).to(images.device)

    @torch.no_grad()
    def mirror_teacher_target(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 62) de-normalised mean of the teacher on ``images`` (N, 3, S, S) and, mapped back, on their mirror;
        with ``mirror_teacher_shift`` d > 0 also on the four views shifted by (+-d, +-d) pixels and their mirrors."""
        matrix_t, offset = self.mirror_affine
        views = shifted_views(images, self.config.mirror_teacher_shift)
        # one teacher call on every view and its mirror (2 x views x N crops)
        every = self._teacher_params(torch.cat([v for _, view in views for v in (view, torch.flip(view, dims=(3,)))]))
        chunks = every.split(len(images))  # plain, flipped, plain, flipped, ... in the order of the views
        total = None
        for index, ((dx, dy), _) in enumerate(views):
            plain, flipped = chunks[2 * index], chunks[2 * index + 1]
            averaged = 0.5 * (plain + flipped @ matrix_t + offset)
            averaged = averaged + view_to_crop_offset(dx, dy, images.shape[-1]).to(averaged)
            total = averaged if total is None else total + averaged
        return total / len(views)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"

    def save(self, path: Path | None = None) -> Path:
        return save_checkpoint(
            path or self.checkpoint_path(),
            self.model,
            {
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "train_config": json.dumps(_config_dict(self.config)),
                "history": json.dumps(self.history[-200:]),
                "corpus_fingerprint": self.corpus_fingerprint,
            },
        )

    def resume(self, path: Path) -> None:
        """Continue a run from its checkpoint (model, optimiser, step). The run's config must be the checkpoint's
        (a different schedule or batch would silently make another run); a different corpus build is allowed but
        said, since the batches then differ from the ones the run would have seen."""
        state = read_checkpoint(path, map_location=self.device)
        if "optimizer" not in state or "step" not in state:
            raise ValueError(f"{path}: not a training checkpoint (no optimiser state / step): packaged weights?")
        saved = json.loads(state.get("train_config", "{}"))
        mine = _config_dict(self.config)
        differ = config_differences(saved, mine)
        if differ:
            raise ValueError(
                f"{path}: trained with another config ({', '.join(f'{k}={saved[k]!r}' for k in differ)}): "
                "resume it with the config it was trained with"
            )
        load_state_dict_strict(self.model, state["state_dict"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = json.loads(state.get("history", "[]"))
        recorded = state.get("corpus_fingerprint")
        if recorded and recorded != self.corpus_fingerprint:
            LOGGER.warning(
                "%s was trained on corpus %s, this corpus is %s: the run continues, but not bit-exactly",
                path,
                recorded,
                self.corpus_fingerprint,
            )
        LOGGER.info("resumed %s at step %d of %d", path, self.step, self.total_steps)

    # ------------------------------------------------------------------ training
    def batch_indices(self, step: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(epoch, corpus rows, augmentation keys) of a step's batch; a key tells copies of one row apart."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.train_indices))
        size = self.config.batch_size
        chosen = order[within * size : (within + 1) * size]
        rows = self.train_indices[chosen]
        keys = rows + self.train_copies[chosen] * len(self.corpus)
        return epoch, rows, keys

    def loss_terms(
        self,
        images: torch.Tensor,
        params: torch.Tensor,
        landmarks_crop: torch.Tensor,
        teacher: torch.Tensor | None = None,
        distill_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The objective of one batch; ``teacher`` (N, 62) de-normalised peer params (NaN rows: none) and
        ``distill_weights`` (N,) add the distillation term."""
        normalized = self.model(images)
        pred = self.stats.denormalize(normalized)
        terms = self.loss(pred, params)
        lm2d = self.loss.landmark_loss_2d(pred, landmarks_crop.transpose(1, 2))
        config = self.config
        total = config.loss_scale * terms["total"] + config.param_weight * terms["param"] + config.landmark_2d_weight * lm2d
        out = {**{k: v.detach() for k, v in terms.items()}, "lm2d": lm2d.detach()}
        if teacher is not None and distill_weights is not None and bool((distill_weights > 0).any()):
            use = distill_weights > 0
            target = self.stats.normalize(teacher[use])
            distill = ((normalized[use] - target) ** 2).mean(1)
            distill_term = (distill * distill_weights[use]).sum() / len(distill_weights)
            total = total + distill_term
            out["distill"] = distill.mean().detach()
        out["objective"] = total
        return out

    def train(self) -> Path:
        config = self.config
        log_path = self.out_dir / "metrics.jsonl"
        self.model.train()
        progress = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")
        started = time.time()
        batches = self._batches(self.step)
        device = self.device
        while self.step < self.total_steps:
            epoch, indices, batch = next(batches)
            lr = learning_rate_at(config, self.step, self.steps_per_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            images = torch.from_numpy(batch.images).to(device).contiguous(memory_format=torch.channels_last)
            if self.mirror_teacher is not None:
                teacher = self.mirror_teacher_target(images)
                weights = np.full(len(indices), config.mirror_teacher_weight, np.float32)
            else:
                weights = self.distill_rows[indices]
                teacher = torch.from_numpy(np.nan_to_num(batch.teacher_params)).to(device) if weights.any() else None
            terms = self.loss_terms(
                images,
                torch.from_numpy(batch.params).to(device),
                torch.from_numpy(batch.landmarks).to(device),
                teacher,
                torch.from_numpy(weights).to(device),
            )
            value = float(terms["objective"].detach())
            self._guard(value, epoch, indices)
            self.optimizer.zero_grad(set_to_none=True)
            terms["objective"].backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            self.step += 1
            self.history.append(value)
            progress.update(1)
            progress.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.4f}")
            if self.step % config.log_every == 0:
                record = {"step": self.step, "epoch": epoch, "lr": lr, "elapsed_s": round(time.time() - started, 1)}
                record.update({k: round(float(v.detach()), 5) for k, v in terms.items()})
                _append_jsonl(log_path, record)
            end_of_epoch = self.step % self.steps_per_epoch == 0
            if end_of_epoch or self.step == self.total_steps:
                val = self.validate()
                _append_jsonl(log_path, {"step": self.step, "epoch": epoch, "val_nme": val})
                LOGGER.info("step %d epoch %d: val %s NME2D %.3f%%", self.step, epoch, config.val_split, 100 * val)
            out_of_time = config.time_budget_s > 0 and time.time() - started > config.time_budget_s
            if self.step % config.checkpoint_every == 0 or end_of_epoch or self.step == self.total_steps or out_of_time:
                self.save()
            if out_of_time:
                LOGGER.warning(
                    "time budget of %.0f s spent at step %d of %d: stopped (resume with --resume)",
                    config.time_budget_s,
                    self.step,
                    self.total_steps,
                )
                _append_jsonl(log_path, {"step": self.step, "val_nme": self.validate(), "stopped": "time budget"})
                break
        progress.close()
        batches.close()
        return self.save()

    def _batches(self, first_step: int):
        """(epoch, rows, batch) of every step from ``first_step`` on; made ahead by ``loader_workers`` processes
        (same batches either way: each depends only on its step)."""

        def make(step: int):
            epoch, indices, keys = self.batch_indices(step)
            return epoch, indices, make_batch(self.corpus, indices, self.config.seed, epoch, self.augment, keys=keys)

        if self.config.loader_workers <= 0:
            for step in range(first_step, self.total_steps):
                yield make(step)
            return
        import multiprocessing
        from collections import deque

        _LOADER["make"] = make
        ahead = 3 * self.config.loader_workers  # bounded: batches are ~30 MB each
        with multiprocessing.get_context("fork").Pool(self.config.loader_workers) as pool:
            pending: deque = deque()
            next_step = first_step
            while pending or next_step < self.total_steps:
                while len(pending) < ahead and next_step < self.total_steps:
                    pending.append(pool.apply_async(_make_batch_of_step, (next_step,)))
                    next_step += 1
                yield pending.popleft().get()

    def _guard(self, value: float, epoch: int, indices: np.ndarray) -> None:
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"loss is {value} at step {self.step} (epoch {epoch}, batch of corpus rows {indices[:4].tolist()}...)"
            )
        if len(self.history) >= 50:
            median = float(np.median(self.history[-200:]))
            if value > self.config.explode_factor * max(median, 1e-6):
                raise TrainingDiverged(
                    f"loss exploded to {value:.4g} (> {self.config.explode_factor} x running median {median:.4g}) at step {self.step} "
                    f"(epoch {epoch}, batch of corpus rows {indices[:4].tolist()}...)"
                )

    @torch.no_grad()
    def validate(self) -> float:
        """Mean NME2D on the validation split (plain inference crops, annotated landmarks)."""
        indices = np.flatnonzero((self.corpus.splits == self.config.val_split) & (self.corpus.kinds == "real"))[
            : self.config.val_limit
        ]
        if len(indices) == 0:
            return float("nan")
        self.model.eval()
        plain = AugmentConfig(enabled=False)
        errors = []
        for start in range(0, len(indices), 128):
            batch = make_batch(self.corpus, indices[start : start + 128], 0, 0, plain)
            pred = self.stats.denormalize(self.model(torch.from_numpy(batch.images).to(self.device)).cpu().numpy())
            points = crop.model_to_crop(self.morphable.landmarks_model(pred))[:, :2]  # (N, 2, 68) crop pixels
            errors.append(nme_2d(points, batch.landmarks.transpose(0, 2, 1)))
        self.model.train()
        return float(np.concatenate(errors).mean())


_LOADER: dict = {}  # the batch maker of the loader processes (inherited through fork)


def shifted_views(images: torch.Tensor, shift: int) -> list[tuple[tuple[int, int], torch.Tensor]]:
    """The mirror teacher's views of crops (N, C, S, S): the crops, then, for ``shift`` d > 0, the four crops of
    the ROI boxes moved by (+-d, +-d) pixels, ``view[y, x] = crop[y + dy, x + dx]``, edge pixels replicated
    (what ``drtn.crop.crop_image`` of the moved box would cut with a replicated border)."""
    if not shift:
        return [((0, 0), images)]
    size = images.shape[-1]
    padded = torch.nn.functional.pad(images, (shift,) * 4, mode="replicate")
    offsets = [(0, 0)] + [(sx * shift, sy * shift) for sx in (-1, 1) for sy in (-1, 1)]
    return [((dx, dy), padded[:, :, shift + dy : shift + dy + size, shift + dx : shift + dx + size]) for dx, dy in offsets]


def view_to_crop_offset(dx: int, dy: int, size: int = crop.CROP_SIZE) -> torch.Tensor:
    """(62,) to add to de-normalised params predicted on the view ``view[y, x] = crop[y + dy, x + dx]`` to get
    the crop's: the view is the crop's ROI box moved by (dx, dy), so only the pose's translation changes
    (``drtn.crop`` frame change; its linear part is the identity)."""
    view_box = np.array([dx, dy, dx + size, dy + size], dtype=np.float64)
    change = crop.box_image_to_model_matrix(np.array([0.0, 0.0, size, size]), size) @ np.linalg.inv(
        crop.box_image_to_model_matrix(view_box, size)
    )
    if not np.allclose(change[:3, :3], np.eye(3)):
        raise AssertionError("a shifted view must change only the translation")
    out = torch.zeros(NUM_PARAMS)
    out[[3, 7, 11]] = torch.from_numpy(change[:3, 3]).float()
    return out


def _make_batch_of_step(step: int):
    return _LOADER["make"](step)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# what may change when a run is resumed (machine and bookkeeping); every other TrainConfig key must match
RESUME_MAY_CHANGE = frozenset(
    {"device", "loader_workers", "threads", "time_budget_s", "max_steps", "checkpoint_every", "log_every"}
)


def config_differences(saved: dict, current: dict) -> list[str]:
    """Keys of a checkpoint's ``train_config`` that differ from ``current`` (both as :func:`_config_dict`)."""
    return sorted(k for k in saved if k not in RESUME_MAY_CHANGE and k in current and saved[k] != current[k])


def _config_dict(config: TrainConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def package_weights(
    checkpoint_path: str | Path,
    out_path: str | Path,
    note: str = "",
    average_with: str | Path | None = None,
    weight: float = 1.0,
) -> Path:
    """Write a shippable checkpoint: the model and its config only (no optimiser), plus training provenance.

    With ``average_with`` (a checkpoint of the same config) the weights are ``weight x checkpoint + (1 - weight) x
    average_with`` — a weight-space ensemble of a fine-tune and the model it started from (WiSE-FT), which keeps
    the start's accuracy on what it knew and part of the fine-tune's gains.
    """
    from drtn.model import load_model

    state = read_checkpoint(checkpoint_path)
    model = load_model(checkpoint_path)
    extra = {"step": int(state.get("step", 0)), "train_config": state.get("train_config", "{}"), "note": note}
    if average_with is not None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"average weight: expected a number in [0, 1], got {weight}")
        other = load_model(average_with)
        if other.config != model.config:
            raise ValueError(
                f"cannot average {checkpoint_path} ({model.config.name}) with {average_with} ({other.config.name}): configs differ"
            )
        theirs = other.state_dict()
        model.load_state_dict(
            {k: weight * v + (1 - weight) * theirs[k] if v.is_floating_point() else v for k, v in model.state_dict().items()}
        )
        extra["average"] = json.dumps({"with": str(average_with), "weight_of_this_run": weight})
    return save_checkpoint(out_path, model, extra)


def plot_metrics(log_path: str | Path, out_png: str | Path) -> Path:
    """Training curves (objective, lm68, validation NME) from ``metrics.jsonl`` to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [r for r in records if "objective" in r]
    val = [r for r in records if "val_nme" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].semilogy([r["step"] for r in train], [r["objective"] for r in train], label="objective")
    axes[0].semilogy([r["step"] for r in train], [r["lm2d"] for r in train], label="lm2d (px²)")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].plot([r["step"] for r in val], [100 * r["val_nme"] for r in val], "o-")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("val NME2D (%)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
