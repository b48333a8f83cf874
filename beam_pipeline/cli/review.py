"""The commands after a run: ``export`` (for people and players), ``import-annotations`` (corrections back
to a training manifest), ``similar`` (more like one video) and ``duplicates`` (near-duplicate groups)."""

from __future__ import annotations

import sys

__all__ = ["COMMANDS", "add_parsers"]


def add_parsers(sub) -> None:
    """Adds the review commands' parsers to ``sub`` (argparse subparsers); imports nothing heavy, so that
    a bad flag is refused before Beam loads."""
    exp = sub.add_parser("export", help="a run's labels for Label Studio, players (WebVTT) or a CSV",
                         description="label-studio: tasks.json (segments as pre-annotations, doubtful "
                                     "videos first) and label_config.xml; webvtt: a .vtt per video, a cue "
                                     "per segment; csv: frame_predictions.csv (needs output.write_probs).")
    exp.add_argument("output", metavar="OUTPUT_DIR", help="a `videolabel run` output (local or gs://)")
    exp.add_argument("--format", required=True, help="label-studio, webvtt or csv")
    exp.add_argument("--output", dest="folder", required=True, metavar="DIR", help="folder to write into")
    exp.add_argument("--document-root", default="/",
                     help="label-studio: Label Studio's LOCAL_FILES_DOCUMENT_ROOT, which local video paths "
                          "are served under (default /)")
    imp = sub.add_parser("import-annotations", help="a Label Studio JSON export -> a segment manifest",
                         description="Writes uri,start_s,end_s,label,split, one row per labelled stretch of "
                                     "each annotated task, for `videolabel train --manifest`.")
    imp.add_argument("export", metavar="EXPORT", help="Label Studio's JSON export of the project")
    imp.add_argument("--output", required=True, metavar="MANIFEST", help="the manifest csv to write")
    similar = sub.add_parser("similar", help="the videos (or segments) most like one video",
                             description="Needs a run with output.write_embeddings.")
    similar.add_argument("output", metavar="OUTPUT_DIR")
    similar.add_argument("video_id", metavar="VIDEO_ID")
    similar.add_argument("--k", type=int, default=10, help="how many (default 10)")
    similar.add_argument("--segments", action="store_true", help="search the segments instead of the videos")
    dups = sub.add_parser("duplicates", help="groups of near-duplicate videos in a run",
                          description="Needs a run with output.write_embeddings.")
    dups.add_argument("output", metavar="OUTPUT_DIR")
    dups.add_argument("--threshold", type=float, help="cosine similarity from which two videos are copies "
                                                      "(default: beam_pipeline.outputs.similar's)")
    dups.add_argument("--csv", metavar="PATH", help="also write the groups to this csv")


def _cmd_export(args, beam_args) -> int:
    from beam_pipeline.outputs.exports import export

    paths = export(args.output, args.format, args.folder, document_root=args.document_root)
    print(f"wrote {len(paths)} file{'s' * (len(paths) != 1)} into {args.folder}"
          + (f": {', '.join(paths[:3])}{' ...' if len(paths) > 3 else ''}" if paths else ""))
    return 0


def _cmd_import(args, beam_args) -> int:
    from beam_pipeline.outputs.annotations import import_annotations

    found = import_annotations(args.export, args.output)
    print(f"{found.annotated} of {found.tasks} tasks annotated ({found.changed} changed from the model's "
          f"labels): {len(found.rows)} segments into {args.output}")
    if not found.rows:
        print("videolabel: no annotated task: nothing to train on yet", file=sys.stderr)
        return 1
    return 0


def _cmd_similar(args, beam_args) -> int:
    from beam_pipeline.outputs.similar import more_like_this

    table = "segments" if args.segments else "videos"
    rows = more_like_this(args.output, args.video_id, args.k, table)
    print(rows.to_string(index=False))
    return 0


def _cmd_duplicates(args, beam_args) -> int:
    from beam_pipeline.outputs.similar import DUPLICATE_THRESHOLD, near_duplicates

    groups = near_duplicates(args.output, args.threshold or DUPLICATE_THRESHOLD)
    count = groups["group"].nunique()
    print(f"{count} group{'s' * (count != 1)} of near-duplicates, {len(groups)} videos")
    if len(groups):
        print(groups[["group", "size", "uri", "similarity"]].to_string(index=False))
    if args.csv:
        groups.to_csv(args.csv, index=False)
    return 0


COMMANDS = {"export": _cmd_export, "import-annotations": _cmd_import, "similar": _cmd_similar,
            "duplicates": _cmd_duplicates}
