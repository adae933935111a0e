"""`main.py train | eval` argument definitions; the work lives in training.* modules."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

LOGGER = logging.getLogger("training")


def config_path(text: str) -> Path:
    """A ``--config`` file, or a config shipped with the package by name (``shipped_rt``, ``shipped_rt.json`` or
    ``training/configs/shipped_rt.json`` work outside the source tree too, after ``pip install``)."""
    path = Path(text)
    if path.is_file():
        return path
    packaged = Path(__file__).resolve().parent / "configs" / (path.name if path.suffix else f"{path.name}.json")
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"--config: no file {text} (shipped configs: {', '.join(sorted(p.stem for p in packaged.parent.glob('*.json')))})"
    )


def _check_outputs(outputs, inputs) -> None:
    """:func:`drtn.outputs.check_output_paths` (imported here: ``main.py --help`` stays light)."""
    from drtn.outputs import check_output_paths

    check_output_paths(outputs, inputs)


def check_train_outputs(args, model: str | None) -> None:
    """``train``: refuse bad output paths before any asset, corpus or model is loaded (one line naming the path).

    ``--package PT``: a .pt / .pth / .ckpt file that is neither the run's ``OUT/last.pt`` nor ``--average-with``;
    ``--pack NPZ``: an .npz file; training: ``--out`` (and ``--work``, which holds labels and corpora) a folder or
    a new path whose nearest existing folder is writable, ``OUT/last.pt`` not one of the inputs. ``model`` is the
    config's model name (the default ``--out`` is ``WORK/<model>``).
    """
    from drtn.outputs import CHECKPOINT_SUFFIXES, NPZ_SUFFIXES, Output

    out = Path(args.out or Path(args.work) / (model or args.model))
    if args.package:
        _check_outputs([Output(Path(args.package), "--package", CHECKPOINT_SUFFIXES)], [out / "last.pt", args.average_with])
        return
    config = config_path(args.config) if args.config else None
    if args.pack:
        _check_outputs(
            [Output(Path(args.pack), "--pack", NPZ_SUFFIXES), Output(Path(args.work), "--work", folder=True)],
            [config, args.data, args.video_records],
        )
        return
    outputs = [Output(out, "--out", folder=True), Output(out / "last.pt", "--out", CHECKPOINT_SUFFIXES)]
    if not args.packed:
        outputs.append(Output(Path(args.work), "--work", folder=True))
    _check_outputs(outputs, [config, args.packed, None if args.resume else args.resume_from])


def check_eval_outputs(args) -> None:
    """``eval``: ``--out`` a folder (``report.md`` and ``ced_<set>.png`` go there, none of them an input: the
    checkpoints, the AFLW2000 folder), ``--cache`` a folder; checked before anything is loaded."""
    from drtn.outputs import Output

    out = Path(args.out)
    names = [s for s in args.splits.split(",") if s] + [f"{s}_profiled" for s in args.profiled.split(",") if s]
    if args.aflw2000:
        names.append(Path(args.aflw2000).name)
    outputs = [Output(out, "--out", folder=True), Output(out / "report.md", "--out", (".md",))]
    outputs += [Output(out / f"ced_{name}.png", "--out", (".png",)) for name in names]
    if args.cache:
        outputs.append(Output(Path(args.cache), "--cache", folder=True))
    _check_outputs(outputs, [args.checkpoint, args.baseline, args.aflw2000])


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="fit labels, build the corpus, train a DRTN model (resumable)")
    train.add_argument("--data", default="../shared/data", help="landmark corpus folder (300w/, youtube_faces_68/, infanface/)")
    train.add_argument("--work", default="runs", help="folder for labels, corpus and runs")
    train.add_argument("--out", default=None, help="run folder (default WORK/<model>)")
    train.add_argument("--model", default="drtn_rt", help="model config name (see drtn.model.list_configs())")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="initial learning rate (paper 0.03)")
    train.add_argument("--max-steps", type=int, default=None, help="stop after N steps (smoke runs)")
    train.add_argument("--profile-fraction", type=float, default=0.5, help="share of training faces also profiled to large yaw")
    train.add_argument(
        "--profile-poses",
        choices=("yaw", "sphere"),
        default="yaw",
        help="where profiles go: 'yaw' (first recipe: 35-85 deg yaw) or 'sphere' (yaw to 90, pitch to 45, and both)",
    )
    train.add_argument(
        "--profiles",
        default="",
        metavar="SPEC",
        help="profiles per profiled face: N, or per source 'N,300w=3,infanface=3' (default 1)",
    )
    train.add_argument("--workers", type=int, default=1, help="processes that build the corpus")
    train.add_argument(
        "--partial-corpus",
        action="store_true",
        help="train on the corpus shards built so far (sphere profiles) instead of finishing the build",
    )
    train.add_argument(
        "--video-records",
        default=None,
        metavar="DIR",
        help="also train on video frames pseudo-labelled by the peer: DIR holds NAME.jsonl from `main.py video NAME.mp4 --backend teacher --no-smoothing --records` (docs/training.md)",
    )
    train.add_argument(
        "--videos",
        default="../shared/samples/video,../shared/samples/video/liveportrait",
        help="comma list of folders holding the NAME.mp4 of --video-records",
    )
    train.add_argument("--video-every", type=int, default=3, help="keep every N-th frame of the videos")
    train.add_argument("--config", default=None, help="JSON file of TrainConfig fields (unknown keys are rejected)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if present")
    train.add_argument(
        "--resume-from",
        default=None,
        metavar="CKPT",
        help="continue the run of this training checkpoint (e.g. the committed training/checkpoints/*.pt of a run "
        "that spans sessions) with the same --config; its checkpoints then go to OUT/last.pt",
    )
    train.add_argument("--threads", type=int, default=None)
    train.add_argument(
        "--pack",
        default=None,
        metavar="NPZ",
        help="do not train: pack the prepared corpus (+ video frames) into one file of at most --pack-mib (for a GPU machine)",
    )
    train.add_argument("--pack-mib", type=float, default=60.0)
    train.add_argument(
        "--packed", default=None, metavar="NPZ", help="train on a packed corpus (from --pack) instead of building one"
    )
    train.add_argument("--device", default=None, help="torch device (cpu, cuda)")
    train.add_argument("--loader-workers", type=int, default=None, help="processes making batches ahead of the step")
    train.add_argument(
        "--average-with", default=None, metavar="PT", help="with --package: average the weights with this checkpoint (WiSE-FT)"
    )
    train.add_argument(
        "--average-weight", type=float, default=0.5, help="with --average-with: share of OUT/last.pt in the average"
    )
    train.add_argument(
        "--package",
        default=None,
        metavar="PT",
        help="do not train: write OUT/last.pt as a shippable checkpoint (no optimiser) to PT",
    )
    train.set_defaults(handler=run_train)

    ablation = commands.add_parser("ablation", help="reduced-scale Table III: train each branch variant, compare val NME")
    ablation.add_argument("--data", default="../shared/data")
    ablation.add_argument("--work", default="runs")
    ablation.add_argument("--out", default="runs/ablation")
    ablation.add_argument("--size", default="drtn_rt", choices=("drtn_rt", "drtn_paper"))
    ablation.add_argument("--variants", default="", help="comma list (default: all of Table III)")
    ablation.add_argument(
        "--config",
        default=None,
        help="JSON of TrainConfig fields shared by all variants (e.g. training/configs/shipped_rt.json)",
    )
    ablation.add_argument("--epochs", type=int, default=4)
    ablation.add_argument("--max-steps", type=int, default=None)
    ablation.add_argument("--profile-fraction", type=float, default=0.5)
    ablation.add_argument("--profile-poses", choices=("yaw", "sphere"), default="yaw")
    ablation.add_argument("--profiles", default="")
    ablation.add_argument("--workers", type=int, default=1)
    ablation.set_defaults(handler=run_ablation_command)

    evaluate = commands.add_parser("eval", help="NME tables (Table I layout) and CED plots, our model beside the peer teacher")
    evaluate.add_argument("--checkpoint", default=None, help="model checkpoint (default: the bundled model)")
    evaluate.add_argument("--data", default="../shared/data", help="landmark corpus folder")
    evaluate.add_argument(
        "--splits",
        default="val_helen,val_afw,val_infant,val_pose",
        help="held-out splits of the landmark corpus ('' for none); val_pose: the real large-pose set (training/splits/large_pose.json)",
    )
    evaluate.add_argument(
        "--robustness",
        default="val_helen,val_afw,val_pose",
        help="held-out sets (of --splits) whose faces make the robustness table ('' to skip)",
    )
    evaluate.add_argument(
        "--profiled",
        default="",
        help="held-out splits to also evaluate turned to 30-85 deg yaw by face profiling (synthetic large-pose check), e.g. val_helen",
    )
    evaluate.add_argument("--aflw2000", default=None, help="an AFLW2000-3D-format folder (image + .mat with pt3d_68)")
    evaluate.add_argument("--no-teacher", action="store_true", help="skip the 3DDFA_V2 peer")
    evaluate.add_argument(
        "--flip-average",
        action="store_true",
        help="also evaluate mirror-averaged inference (each crop and its mirror, drtn.mirror) for ours and the peer",
    )
    evaluate.add_argument(
        "--flip-pose",
        default="linear",
        help="with --flip-average: how the two poses are averaged, 'linear' (3x4 blocks), 'rotation' or both 'linear,rotation'",
    )
    evaluate.add_argument(
        "--baseline",
        default=None,
        metavar="PT",
        help="a second checkpoint in the same run (e.g. drtn/weights/drtn_rt.pt when --checkpoint is a new model)",
    )
    evaluate.add_argument(
        "--cache", default="runs/eval_sets", help="folder caching the held-out sets (crops + ground-truth pose fits; '' : none)"
    )
    evaluate.add_argument("--limit", type=int, default=0, help="first N faces per set (0: all)")
    evaluate.add_argument("--out", default="runs/eval", help="report folder (report.md, ced_*.png)")
    evaluate.set_defaults(handler=run_eval)


def _assets(args):
    from drtn.assets import BFM_FILES, TEACHER_FILE, find_assets

    return find_assets(args.assets, BFM_FILES + (TEACHER_FILE,))


def parse_profiles(spec: str) -> tuple[float, dict[str, float]]:
    """``'2,300w=3,youtube_faces_68=0.3'`` -> (2, {'300w': 3, 'youtube_faces_68': 0.3}); '' -> (1, {})."""
    per_face, per_source = 1, {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        try:
            if "=" in part:
                source, count = part.split("=", 1)
                per_source[source.strip()] = float(count)
            else:
                per_face = float(part)
        except ValueError:
            raise ValueError(f"--profiles: expected N or SOURCE=N items, got {part!r}") from None
    return per_face, per_source


def corpus_folder_name(args) -> str:
    """Corpus cache folder of the profiling options (the first recipe keeps its old name)."""
    name = f"corpus_p{int(round(100 * args.profile_fraction))}"
    poses, spec = getattr(args, "profile_poses", "yaw"), getattr(args, "profiles", "")
    if poses != "yaw" or spec:
        name += f"_{poses}_" + (spec.replace(",", "_").replace("=", "") or "1")
    return name


def prepare_corpus(args, assets, morphable):
    """Labels (3DMM fits) and the canvas corpus, built once into ``--work`` and reused.

    The label file keeps the splits it was made with; the large-pose set's photos / identities
    (training/splits/large_pose.json) are taken out of training here, so they never train whatever the cache holds.
    """
    import dataclasses

    from training.corpus import Corpus, ProfilingPlan, build_corpus, build_corpus_shards, load_shards
    from training.datasets import apply_large_pose_holdout, load_corpus
    from training.labels import LabelSet, make_labels
    from training.profiling import ProfilePoseConfig
    from training.teacher import peer_predictor

    work = Path(args.work)
    labels_path = work / "labels" / "corpus.npz"
    if labels_path.is_file():
        labels = LabelSet.load(labels_path)
    else:
        labels = make_labels(load_corpus(args.data), morphable, peer_predictor(assets))
        labels.save(labels_path)
    labels = dataclasses.replace(labels, splits=apply_large_pose_holdout(labels.splits, labels.groups))
    corpus_dir = work / corpus_folder_name(args)
    per_face, per_source = parse_profiles(getattr(args, "profiles", ""))
    poses = ProfilePoseConfig() if getattr(args, "profile_poses", "yaw") == "sphere" else None
    plan = ProfilingPlan(fraction=args.profile_fraction, per_face=per_face, per_source=per_source, poses=poses)
    if poses is not None:  # second recipe: sharded, resumable build; --partial-corpus trains on the shards built so far
        if getattr(args, "partial_corpus", False) and (corpus_dir / "real" / "canvases.npy").is_file():
            corpus = load_shards(corpus_dir)
        else:
            corpus = build_corpus_shards(labels, morphable, plan, corpus_dir, workers=getattr(args, "workers", 1))
    else:
        try:
            corpus = Corpus.load(corpus_dir)
        except FileNotFoundError:
            corpus = build_corpus(labels, morphable, plan=plan, workers=getattr(args, "workers", 1))
            corpus.save(corpus_dir)
    corpus.splits = apply_large_pose_holdout(corpus.splits, corpus.groups)
    if getattr(args, "video_records", None):
        corpus = Corpus.concat([corpus, _video_corpus(args, assets, morphable)])
    LOGGER.info("training corpus: %s", corpus.summary())
    return corpus


def _video_corpus(args, assets, morphable):
    """Pseudo-labelled video frames, built once into ``--work`` (keyed by the records folder and frame step)."""
    from training.corpus import Corpus
    from training.teacher import peer_predictor
    from training.video_labels import pair_videos, video_corpus

    if args.video_every < 1:
        raise ValueError(f"--video-every: expected >= 1, got {args.video_every}")
    folder = Path(args.work) / f"corpus_video_{Path(args.video_records).name}_e{args.video_every}"
    try:
        return Corpus.load(folder)
    except FileNotFoundError:
        pairs = pair_videos(args.video_records, [d for d in args.videos.split(",") if d])
        corpus = video_corpus(pairs, morphable, peer_predictor(assets), every=args.video_every)
        corpus.save(folder)
        return corpus


def run_train(args) -> int:
    from drtn.morphable import MorphableModel
    from training.trainer import TrainConfig, Trainer, plot_metrics

    if args.package:
        from training.trainer import package_weights

        check_train_outputs(args, None)
        source = Path(args.out or Path(args.work) / args.model) / "last.pt"
        if not source.is_file():
            raise FileNotFoundError(f"nothing to package: {source} does not exist")
        note = f"packaged from {source}" + (
            f", averaged {args.average_weight:g} : {1 - args.average_weight:g} with {args.average_with}"
            if args.average_with
            else ""
        )
        LOGGER.info(
            "packaged %s",
            package_weights(source, args.package, note=note, average_with=args.average_with, weight=args.average_weight),
        )
        return 0
    values = json.loads(config_path(args.config).read_text()) if args.config else {}
    overrides = {
        "model": args.model if args.model != "drtn_rt" or "model" not in values else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "max_steps": args.max_steps,
        "threads": args.threads,
        "device": args.device,
        "loader_workers": args.loader_workers,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(values)
    out = Path(args.out or Path(args.work) / config.model)
    if not args.pack and not args.resume and (out / "last.pt").is_file():  # before the corpus is built, not after
        raise ValueError(f"{out / 'last.pt'} exists: pass --resume to continue it or choose another --out")
    check_train_outputs(args, config.model)
    assets = _assets(args)
    morphable = MorphableModel.load(assets)
    if args.pack:
        from training.pack import MIB, pack_corpus

        summary = pack_corpus(prepare_corpus(args, assets, morphable), args.pack, int(args.pack_mib * MIB))
        LOGGER.info("packed corpus %s: %s", args.pack, json.dumps(summary))
        return 0
    if args.packed:
        from training.pack import unpack_corpus

        corpus = unpack_corpus(args.packed)
    else:
        corpus = prepare_corpus(args, assets, morphable)
    trainer = Trainer(config, corpus, morphable, out)
    if args.resume and trainer.checkpoint_path().is_file():
        trainer.resume(trainer.checkpoint_path())
    elif trainer.checkpoint_path().is_file():
        raise ValueError(f"{trainer.checkpoint_path()} exists: pass --resume to continue it or choose another --out")
    elif args.resume_from:
        trainer.resume(Path(args.resume_from))
    (out / "train_config.json").write_text(json.dumps(values, indent=1))
    path = trainer.train()
    plot_metrics(out / "metrics.jsonl", out / "curves.png")
    LOGGER.info("checkpoint %s, curves %s", path, out / "curves.png")
    return 0


def run_ablation_command(args) -> int:
    from drtn.morphable import MorphableModel
    from drtn.outputs import Output
    from training.ablation import run_ablation
    from training.trainer import TrainConfig

    _check_outputs(
        [Output(Path(args.out), "--out", folder=True), Output(Path(args.work), "--work", folder=True)],
        [config_path(args.config) if args.config else None],
    )
    assets = _assets(args)
    morphable = MorphableModel.load(assets)
    corpus = prepare_corpus(args, assets, morphable)
    values = json.loads(config_path(args.config).read_text()) if args.config else {}
    values.update({"epochs": args.epochs, "max_steps": args.max_steps or 0})
    values.pop("model", None)
    base = TrainConfig.from_dict(values)
    variants = [v for v in args.variants.split(",") if v] or None
    print(run_ablation(base, corpus, morphable, args.out, args.size, variants))
    return 0


def _flip_pose_modes(text: str) -> tuple[str, ...]:
    from drtn.mirror import POSE_MODES

    modes = tuple(m for m in text.split(",") if m)
    bad = [m for m in modes if m not in POSE_MODES]
    if bad or not modes:
        raise ValueError(f"--flip-pose: expected one or more of {','.join(POSE_MODES)} (comma-separated), got {text!r}")
    return modes


def _flip_suffix(mode: str, modes: tuple[str, ...]) -> str:
    return "" if len(modes) == 1 and mode == "linear" else f" ({mode})"


def run_eval(args) -> int:
    from drtn.model import load_default_model, load_model
    from drtn.morphable import MorphableModel
    from training import evaluate as ev
    from training.teacher import peer_predictor

    check_eval_outputs(args)
    assets = _assets(args)
    morphable = MorphableModel.load(assets)
    teacher = peer_predictor(assets)  # the peer's column, and the initial guess of the ground-truth yaw fits
    model = load_model(args.checkpoint) if args.checkpoint else load_default_model()
    methods = [("DRTN (ours)", ev.torch_predictor(model, morphable))]
    flip_modes = _flip_pose_modes(args.flip_pose) if args.flip_average else ()
    if flip_modes:
        from drtn.mirror import MirrorMap, flip_averaged

        mirror = MirrorMap.from_morphable(morphable)
        for mode in flip_modes:
            methods.append((f"DRTN (ours) + flip{_flip_suffix(mode, flip_modes)}", flip_averaged(methods[0][1], mirror, mode)))
    if args.baseline:
        methods.append((f"DRTN {Path(args.baseline).stem}", ev.torch_predictor(load_model(args.baseline), morphable)))
    if not args.no_teacher:
        methods.append(("3DDFA_V2 teacher", teacher))
        for mode in flip_modes:
            methods.append((f"3DDFA_V2 teacher + flip{_flip_suffix(mode, flip_modes)}", flip_averaged(teacher, mirror, mode)))
    methods.append(("mean face", ev.mean_face_predictor(morphable)))
    sets = []
    for split in [s for s in args.splits.split(",") if s]:
        sets.append(
            ev.cached_eval_set(
                args.cache,
                f"{split}_n{args.limit}",
                lambda split=split: ev.landmark_eval_set(args.data, split, morphable, teacher, args.limit),
            )
        )
    for split in [s for s in args.profiled.split(",") if s]:
        sets.append(ev.profiled_eval_set(args.data, split, morphable, teacher, args.limit))
    if args.aflw2000:
        sets.append(ev.aflw2000_eval_set(args.aflw2000, args.limit))
    if not sets:
        raise ValueError("nothing to evaluate: give --splits and/or --aflw2000")
    results = [(s, [ev.evaluate(s, predict, morphable, name) for name, predict in methods]) for s in sets]
    extra = []
    wanted = [n for n in args.robustness.split(",") if n]
    if wanted:
        pooled = [s for s in sets if s.name in wanted]
        if len(pooled) != len(wanted):
            raise ValueError(f"--robustness: sets {sorted(set(wanted) - {s.name for s in pooled})} are not among --splits")
        robust = ev.robustness_set(pooled, "+".join(wanted))
        extra.append(ev.format_robustness_table(robust, ev.robustness_results(robust, methods, morphable)))
    report = ev.write_report(results, args.out, extra)
    print(report.read_text())  # the table is the command's output
    LOGGER.info("report written to %s", report)
    return 0
