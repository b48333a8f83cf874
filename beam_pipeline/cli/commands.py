"""The ``videolabel`` command line (also ``python -m beam_pipeline``).

Flags this program does not define pass through to Beam's PipelineOptions, so
every Beam and Dataflow option works as usual; a flag neither knows fails at
start with one line.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import logging
import os
import sys
from collections.abc import Sequence

from beam_pipeline.cli import review

__all__ = ["main"]


def _run_parser(sub) -> None:
    run = sub.add_parser("run", help="label videos into Parquet",
                         description="Label videos; unknown --flags go to Beam's PipelineOptions.")
    run.add_argument("--config", help="YAML config (e.g. configs/local.yaml)")
    run.add_argument("--input", action="append", metavar="GLOB_OR_MANIFEST",
                     help="video glob or manifest (.csv/.jsonl/.parquet); repeatable; replaces input.paths")
    run.add_argument("--output", help="output folder (local or gs://); replaces output.path")
    run.add_argument("--model", help="a SavedModel folder (export-movinet), a `videolabel train` output, "
                                      "a .tflite file (local or gs://) or a TF Hub URL; sets model.handle")
    run.add_argument("--runner", help="Beam runner, e.g. DirectRunner or DataflowRunner")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one config key, e.g. --set sampling.fps=2; repeatable")
    run.add_argument("--overwrite", action="store_true",
                     help="replace a previous run in --output: deletes only the files its _videolabel.json "
                          "names, never files videolabel did not write")
    run.add_argument("--resume", action="store_true",
                     help="keep the videos a previous run into --output finished (same config and model) "
                          "and do the rest")


def _export_parser(sub) -> None:
    exp = sub.add_parser("export-movinet", help="build a MoViNet SavedModel offline",
                         description="Build a MoViNet classifier with tf-models-official and save it as a "
                                     "SavedModel folder (or a .tflite file) that `videolabel run --model` "
                                     "takes, with its labels.txt. Real weights come from --checkpoint; "
                                     "without it they are random (its labels mean nothing).")
    exp.add_argument("--model-id", default="a0", choices=["a0", "a1", "a2", "a3", "a4", "a5"],
                     help="the MoViNet variant: a0 smallest and fastest, a5 largest (default a0)")
    exp.add_argument("--mode", default="stream", choices=["base", "stream"],
                     help="stream: frame by frame with carried state, fast on CPU (default); base: whole "
                          "clips, 3D convolutions")
    exp.add_argument("--output", required=True, help="SavedModel directory to create")
    exp.add_argument("--checkpoint", help="tf.train.Checkpoint prefix of the variant's MoViNet weights "
                                          "(the MoViNet release's checkpoints); without it the weights are "
                                          "random and the labels mean nothing")
    exp.add_argument("--num-classes", type=int, default=600,
                     help="classes of the head (default 600: Kinetics-600, as the published checkpoints)")
    exp.add_argument("--labels", help="labels file for the classes (default: Kinetics-600 for 600)")
    exp.add_argument("--tflite", action="store_true",
                     help="write a TFLite stream model (--output is the .tflite file)")
    exp.add_argument("--image-size", type=int,
                     help="side of the frames the LiteRT model takes (default: the variant's native); "
                          "stream SavedModels are also converted for it, into the model cache")
    exp.add_argument("--quantize", action="store_true", help="TFLite with int8 weights")


def _train_parser(sub) -> None:
    train = sub.add_parser("train", help="fit a classifier from a labelled manifest",
                           description="Extract features with the Beam pipeline, then fit with Keras; "
                                       "unknown --flags go to Beam's PipelineOptions.")
    train.add_argument("--config", required=True, help="YAML config, e.g. configs/lstm_pose.yaml")
    train.add_argument("--manifest", required=True, help="csv/jsonl/parquet with uri,label[,split]")
    train.add_argument("--output", required=True, help="folder for features, model, results and plots")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    train.add_argument("--overwrite", action="store_true",
                       help="replace a previous training output: deletes only the files its _videolabel.json "
                            "names")


def _report_parser(sub) -> None:
    report = sub.add_parser("report", help="accuracy, confusion, timelines, failures of a run",
                            description="Writes OUTPUT/report/index.html, report.json and plots.")
    report.add_argument("output", metavar="OUTPUT", help="a `videolabel run` output folder (local)")
    report.add_argument("--timelines", type=int, default=6, help="videos to plot over time (default 6)")


def _app_parser(sub) -> None:
    from beam_pipeline.app.serve import DEFAULT_MAX_UPLOAD_MB

    app = sub.add_parser("app", help="local web app: label one video; browse a run",
                         description="Serves a Streamlit page on 127.0.0.1 (--host to change): label one "
                                     "video with a model, or browse OUTPUT_DIR (a `videolabel run` output).")
    app.add_argument("output", nargs="?", metavar="OUTPUT_DIR", help="a `videolabel run` output (local or gs://)")
    app.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    app.add_argument("--host", default="127.0.0.1",
                     help="address to serve on (default 127.0.0.1: this machine only)")
    app.add_argument("--model", action="append", default=[], metavar="HANDLE",
                     help="a model the page offers for labelling (as run --model); repeatable")
    app.add_argument("--config", help="YAML config the page labels with (as run --config)")
    app.add_argument("--allow", action="append", default=[], metavar="DIR",
                     help="a folder (local or gs://) whose videos and models the page may open by path; "
                          "repeatable (beside it: only the output and the videos its rows name)")
    app.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
                     help=f"largest upload in MB (default {DEFAULT_MAX_UPLOAD_MB})")


def _demo_parser(sub) -> None:
    demo = sub.add_parser("demo", help="end to end, offline, on generated labelled videos")
    demo.add_argument("--output", default="demo_output", help="folder for videos, model and results")


def _flag_values(args) -> dict[str, dict[str, str | list[str]]]:
    """The config keys ``--input``, ``--output`` and ``--model`` replace, with the values as typed."""
    values: dict[str, dict[str, str | list[str]]] = {}
    if args.input:
        values["input"] = {"paths": list(args.input)}
    if args.output:
        values["output"] = {"path": args.output}
    if args.model:
        values["model"] = {"handle": args.model}
    return values


def _cmd_run(args, beam_args: list[str]) -> int:
    from beam_pipeline.config import load_config
    from beam_pipeline.job import warm_workers

    cfg = load_config(args.config, args.set, _flag_values(args))
    if args.runner:
        beam_args = [f"--runner={args.runner}", *beam_args]
    if warm_workers.wanted(cfg.runner, beam_args):
        warm_workers.start()  # imports the workers' modules while this process imports Beam

    from beam_pipeline.job.launcher import run_job
    from beam_pipeline.outputs.run_record import RunRecord
    from beam_pipeline.outputs.summary import print_summary

    summary = run_job(cfg, beam_args, overwrite=args.overwrite, resume=args.resume)
    if not isinstance(summary, RunRecord):  # a dry run printed what it built, and ran nothing
        return 0
    print_summary(summary, cfg.output.path)
    if summary.counts["videos"] == 0 and summary.resume is None:
        skipped = f" ({summary.skipped.count} left out by their ending)" if summary.skipped else ""
        print(f"videolabel: nothing was labelled: the inputs gave no video{skipped}", file=sys.stderr)
        return 1
    return 0


def _check_export_target(output: str, tflite: bool) -> None:
    """export-movinet writes a new SavedModel folder, or a new .tflite with labels.txt beside it: it never
    writes over files that are already there."""
    from apache_beam.io.filesystems import FileSystems

    from beam_pipeline.config import ConfigError
    from models.labels import labels_beside

    def in_use(path: str) -> bool:  # an empty local folder is free
        return FileSystems.exists(path) and not (os.path.isdir(path) and not os.listdir(path))

    taken = [p for p in ([output, labels_beside(output)] if tflite else [output]) if in_use(p)]
    if taken:
        raise ConfigError(f"--output: {taken[0]!r} already exists; export-movinet writes only new files: "
                          "choose another path")


def _cmd_export(args, beam_args: list[str]) -> int:
    from beam_pipeline.config import ConfigError
    from models.labels import read_labels

    _check_export_target(args.output, args.tflite)
    labels = read_labels(args.labels) if args.labels else None
    from models.movinet_export import export_movinet, export_movinet_tflite  # TensorFlow: after the checks
    from models.movinet_variants import native_imgz

    if args.tflite and (args.mode != "stream" or not args.output.endswith(".tflite")):
        raise ConfigError("--tflite: exports stream models only, to an --output ending in .tflite")
    weights = f"the weights of {args.checkpoint}" if args.checkpoint else "RANDOM weights (no --checkpoint)"
    print(f"building MoViNet {args.model_id} {args.mode} with {weights}, then saving"
          f"{' and converting' if args.tflite or args.mode == 'stream' else ''} it: a minute or two",
          flush=True)
    if args.tflite:
        export_movinet_tflite(args.output, model_id=args.model_id, imgz=args.image_size,
                              num_classes=args.num_classes, checkpoint=args.checkpoint, labels=labels,
                              quantize=args.quantize)
    else:
        export_movinet(args.output, model_id=args.model_id, mode=args.mode,
                       num_classes=args.num_classes, checkpoint=args.checkpoint, labels=labels,
                       litert_imgz=args.image_size or native_imgz(args.model_id))
    print(f"exported MoViNet {args.model_id} {args.mode} ({args.num_classes} classes) to {args.output}")
    if not args.checkpoint:
        from models.weights_note import random_weights_warning

        print(f"warning: {random_weights_warning(args.output)}", file=sys.stderr)
    return 0


def _cmd_train(args, beam_args: list[str]) -> int:
    from beam_pipeline.config import load_config
    from beam_pipeline.training.train_job import run_train

    run_train(load_config(args.config, args.set), args.manifest, args.output, beam_args,
              overwrite=args.overwrite)
    return 0


def _cmd_report(args, beam_args: list[str]) -> int:
    from beam_pipeline.outputs.report import build_report

    report = build_report(args.output, timelines=args.timelines)
    for row in report["accuracy_by_split"]:
        print(f"{row['split']:>8s}: accuracy {row['accuracy']:.3f} ({row['right']}/{row['videos']} videos)")
    if "label_distribution" in report:
        print("no labels: " + ", ".join(f"{k} {v}" for k, v in report["label_distribution"].items()))
    for row in report["failures"]:
        print(f"  failed: {row['error_type']} x{row['videos']} (e.g. {row['example_uri']})")
    print(f"report: {os.path.join(args.output, 'report', 'index.html')}")
    return 0


def _cmd_app(args, beam_args: list[str]) -> int:
    import importlib.util

    from beam_pipeline.app.serve import AppSettings, serve
    from beam_pipeline.config import ConfigError, read_yaml

    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("videolabel app needs Streamlit: pip install -e '.[app]' (make install does)")
    if args.output:
        from beam_pipeline.outputs.run_output import RunOutput

        if "videos" not in RunOutput(args.output).tables():
            raise ConfigError(f"OUTPUT_DIR: {args.output!r} holds no videos/ table of a `videolabel run`")
    if args.config:
        read_yaml(args.config)
    if args.max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb: {args.max_upload_mb} is not a positive size")
    serve(AppSettings(args.output, tuple(args.model), args.config, tuple(args.allow), args.max_upload_mb),
          port=args.port, host=args.host)
    return 0


def _cmd_demo(args, beam_args: list[str]) -> int:
    from beam_pipeline.demo.run import run_demo

    run_demo(args.output, beam_args)
    return 0


def _check_flags(command: argparse.ArgumentParser, beam_args: Sequence[str]) -> None:
    """The flags left for Beam: a typo of one of the command's own (``--ouput``) is named as such,
    before Beam's many flags could suggest another (``--update``); a credential, or a flag Beam does
    not know, is refused from Beam's listed flags (``job.flags``), before Beam loads. Exit 2, one line."""
    from beam_pipeline.config import ConfigError
    from beam_pipeline.job.flags import not_an_option, refused_flag

    own = [flag for action in command._actions for flag in action.option_strings if flag.startswith("--")]
    for arg in beam_args:
        name = arg.split("=", 1)[0]
        if name.startswith("--") and difflib.get_close_matches(name, own, n=1, cutoff=0.8):
            raise ConfigError(not_an_option(name, own, cutoff=0.8))
    refused = refused_flag(beam_args)
    if refused:
        raise ConfigError(refused)


def console_main() -> None:
    """The ``videolabel`` command: ``main`` with the known noise of TensorFlow and Beam filtered off
    stderr (``beam_pipeline.cli.quiet``)."""
    from beam_pipeline.cli.quiet import quiet_stderr

    quiet_stderr()
    code = main()
    # Every output is written and closed by now. Tearing down the interpreter (Beam's, Arrow's and
    # LiteRT's thousands of modules and objects) took 0.45 s after each run: run the exit handlers
    # (the stderr filter drains there) and leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(prog="videolabel", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _export_parser(sub)
    _train_parser(sub)
    _report_parser(sub)
    _app_parser(sub)
    _demo_parser(sub)
    review.add_parsers(sub)
    args, beam_args = parser.parse_known_args(argv)
    if args.command not in ("run", "train") and beam_args:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("beam_pipeline").setLevel(logging.INFO)
    for noisy in ("apache_beam", "tensorflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    from beam_pipeline.config import ConfigError

    commands = {"run": _cmd_run, "export-movinet": _cmd_export, "train": _cmd_train, "report": _cmd_report,
                "app": _cmd_app, "demo": _cmd_demo, **review.COMMANDS}
    try:
        _check_flags(sub.choices[args.command], beam_args)
        return commands[args.command](args, beam_args)
    except ConfigError as exc:
        print(f"videolabel: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the review commands' one-line errors (a run without what they need)
        if args.command not in review.COMMANDS:
            raise
        print(f"videolabel: error: {exc}", file=sys.stderr)
        return 2
