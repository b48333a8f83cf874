"""The Streamlit page of ``videolabel app`` (``streamlit run`` runs this file; see ``app.serve``).

Three views, chosen in the sidebar (and by ``?view=label|browse|failures`` in the URL):

* **Label a video**: upload a file, or give a path or gs:// URI, pick a model, and
  ``beam_pipeline.api.label_videos`` labels it through the same code as ``videolabel run``.
* **Browse the run**: accuracy per split, the confusion matrix, a filterable table of
  videos; the selected video plays beside its frame timeline, with its segments and row.
* **Failures**: failed and partial videos by error type, with examples.

Every read goes through ``beam_pipeline.outputs.run_output`` (cached here with ``st.cache_data``)
and every path through its ``PathGuard``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
import yaml

from beam_pipeline.app.preview import browser_plays, preview_mp4
from beam_pipeline.app.serve import AppSettings
from beam_pipeline.config import VIDEO_EXTENSIONS, ConfigError
from beam_pipeline.outputs.exports import webvtt
from beam_pipeline.outputs.run_output import PathGuard, RefusedPath, RunOutput, VideoDetail, VideoFilter
from beam_pipeline.outputs.similar import SimilarVideos
from models.movinet_variants import is_hub_url
from models.weights_note import random_weights_warning

_log = logging.getLogger("beam_pipeline.app.serve")
_VIEWS = {"label": "Label a video", "browse": "Browse the run", "failures": "Failures"}
_MIME = {".webm": "video/webm", ".ogv": "video/ogg", ".mov": "video/quicktime"}
#: Sections an uploaded config may not set: the page sets where to read, write and how to run.
_PAGE_SECTIONS = ("input", "output", "runner")
_PAGE_SIZE = 50
#: Rows of "More like this" under an opened video.
_SIMILAR_SHOWN = 5
#: Width of the timeline's plots: they sit in the right 3/5 of a wide page, the legend below.
_CHART_PX = 330


# -- cached reads ------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _output(root: str) -> RunOutput:
    return RunOutput(root)


@st.cache_data(show_spinner=False)
def _summary(root: str) -> dict[str, Any]:
    return _output(root).summary()


@st.cache_data(show_spinner=False)
def _page(root: str, where: VideoFilter, offset: int) -> tuple[pd.DataFrame, int]:
    return _output(root).videos(where, offset=offset, limit=_PAGE_SIZE)


@st.cache_data(show_spinner=False)
def _failures(root: str) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    return _output(root).failures()


@st.cache_data(show_spinner=False)
def _video(root: str, video_id: str, split: str | None) -> VideoDetail | None:
    return _output(root).video(video_id, split)


@st.cache_data(show_spinner=False)
@st.cache_resource(show_spinner="indexing the run's embeddings...", max_entries=4)
def _similar(root: str) -> SimilarVideos | None:
    """The run's embeddings, indexed once per output; None for a run without them."""
    try:
        return SimilarVideos(_output(root))
    except ValueError:
        return None


def _names_video(root: str, uri: str) -> bool:
    return _output(root).names_video(uri)


@st.cache_resource(show_spinner=False)
def _upload_dir() -> str:
    """This server's private folder (mode 0700) for uploads and the outputs of labelled videos."""
    return tempfile.mkdtemp(prefix="videolabel-app-")


@st.cache_data(show_spinner=False)
def _video_bytes(uri: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(uri) as handle:
        return handle.read()


def _guard(settings: AppSettings) -> PathGuard:
    """The output, the --allow folders and the upload folder; and the videos the output names."""
    output = settings.output
    roots = (*([output] if output else []), *settings.allow, _upload_dir())
    return PathGuard(roots, (lambda uri: _names_video(output, uri)) if output else None)


# -- pieces ------------------------------------------------------------------------------------

def _frame_spans(frames: pd.DataFrame) -> pd.DataFrame:
    """Each frame's time span: from its timestamp to the next frame's (the last one: one step)."""
    times = frames.timestamp_s.to_numpy(dtype=float)
    step = float(pd.Series(times).diff().median()) if len(times) > 1 else 0.2
    ends = list(times[1:]) + [times[-1] + (step if step > 0 else 0.2)]
    return frames.assign(end_s=ends)


def timeline_chart(frames: pd.DataFrame, segments: pd.DataFrame) -> alt.VConcatChart:
    """Score over time (points coloured by the frame's prediction) above bands of the frame
    predictions, the frame labels where known, and the segments."""
    spans = _frame_spans(frames)
    keep = ["timestamp_s", "end_s", "frame_index", "prediction", "score", "label"]
    spans = spans[[c for c in keep if c in spans]]
    tooltip = [alt.Tooltip("timestamp_s:Q", title="t (s)", format=".2f"), "frame_index:Q", "prediction:N",
               alt.Tooltip("score:Q", format=".3f"), *(["label:N"] if "label" in spans else [])]
    x = alt.X("timestamp_s:Q", title="time (s)")
    y = alt.Y("score:Q", scale=alt.Scale(domain=[0, 1]))
    points = alt.Chart(spans).mark_circle(size=45).encode(x=x, y="score:Q", tooltip=tooltip,
                                                          color=alt.Color("prediction:N", title="class"))
    score = (alt.Chart(spans).mark_line(color="#999").encode(x=x, y=y) + points).properties(
        width=_CHART_PX, height=220)
    bands = [spans.assign(track="frame prediction", start=spans.timestamp_s, end=spans.end_s,
                          value=spans.prediction)[["track", "start", "end", "value"]]]
    if "label" in spans and spans.label.notna().any():
        known = spans[spans.label.notna()]
        bands.append(known.assign(track="label", start=known.timestamp_s, end=known.end_s,
                                  value=known.label)[["track", "start", "end", "value"]])
    if not segments.empty and {"start_s", "end_s", "label"} <= set(segments):
        bands.append(segments.assign(track="segment", start=segments.start_s, end=segments.end_s,
                                     value=segments.label)[["track", "start", "end", "value"]])
    strip = alt.Chart(pd.concat(bands, ignore_index=True)).mark_rect().encode(
        x=alt.X("start:Q", title="time (s)"), x2="end:Q",
        y=alt.Y("track:N", title=None, sort=["frame prediction", "label", "segment"]),
        color=alt.Color("value:N", title="class"), tooltip=["track:N", "value:N", "start:Q", "end:Q"],
    ).properties(width=_CHART_PX, height=90)
    chart = alt.vconcat(score, strip).resolve_scale(color="shared")
    return chart.configure_legend(orient="bottom", columns=4)


@st.cache_data(show_spinner="making a preview the browser can play...", max_entries=32)
def _preview(uri: str, _changed: float | None) -> bytes | None:
    """``uri`` as H.264 in MP4 when the browser cannot play it as it is, else None (``app.preview``);
    cached by uri and modification time."""
    return None if browser_plays(uri) else preview_mp4(uri)


def _play(uri: str, guard: PathGuard, captions: dict[str, str] | None = None) -> None:
    """Plays ``uri`` (as a preview where the browser cannot play it), with ``captions`` (track name ->
    WebVTT text: the video's segments) as its subtitle tracks."""
    try:
        guard.check(uri, "video")
    except RefusedPath as exc:
        st.error(str(exc))
        return
    remote = uri.startswith("gs://")
    if not remote and not os.path.exists(uri):
        st.warning(f"{uri} is not there any more: the rows are shown without the video")
        return
    try:
        preview = _preview(uri, None if remote else os.path.getmtime(uri))
    except Exception as exc:  # a video that decodes for the pipeline but not for a preview: say so
        _log.warning("no preview of %s: %s", uri, exc)
        preview = None
    if preview is not None:
        st.caption("a preview (H.264 in MP4): the browser cannot play this file's own format")
        st.video(preview, format="video/mp4", subtitles=captions)
        return
    mime = _MIME.get(os.path.splitext(uri)[1].lower(), "video/mp4")
    st.video(_video_bytes(uri) if remote else uri, format=mime, subtitles=captions)


def _row_table(row: dict[str, Any]) -> pd.DataFrame:
    values = ["" if v is None else str(v) for v in row.values()]
    return pd.DataFrame({"column": list(row), "value": values})


def show_video(detail: VideoDetail, guard: PathGuard) -> None:
    """One video: its prediction and top k, the video beside its timeline, segments, and its row."""
    row = detail.row
    name = os.path.basename(row["uri"])
    if row["status"] == "failed":
        st.subheader(name)
        st.error(f"failed at {row.get('error_stage') or '?'}: {row.get('error_type')}: "
                 f"{row.get('error_message')}", icon=":material/error:")
    else:
        truth = f" — label **{row['label']}**" if row.get("label") else ""
        verdict = "" if row.get("is_error") is None else (" ✗ wrong" if row["is_error"] else " ✓ right")
        st.subheader(name)
        st.markdown(f"Prediction: **{row['prediction']}** ({row['score']:.3f}){truth}{verdict}",
                    help="the model's output after the video's last sampled frame")
        if row["status"] == "partial":
            st.warning(f"partial: {row.get('error_type')}: {row.get('error_message')}")
    left, right = st.columns([2, 3])
    with left:
        if row["status"] != "failed":
            segments = detail.segments.to_dict("records")
            _play(row["uri"], guard, {"segments": webvtt(segments)} if segments else None)
        if row.get("top_k_labels") is not None and len(row["top_k_labels"]):
            top_k = pd.DataFrame({"class": list(row["top_k_labels"]), "score": list(row["top_k_scores"])})
            st.dataframe(top_k, hide_index=True, width="stretch")
    with right:
        if detail.frames.empty:
            st.info("no frame rows for this video")
        else:
            st.altair_chart(timeline_chart(detail.frames, detail.segments), width="content")
    st.markdown("**Segments**")
    if detail.segments.empty:
        st.caption("no segments for this video (or no segments table in this output)")
    else:
        cols = [c for c in ("segment_index", "start_s", "end_s", "label", "mean_score", "max_score", "frames",
                            "true_label", "overlap_s") if c in detail.segments]
        st.dataframe(detail.segments[cols], hide_index=True, width="stretch")
    with st.expander("The video's row", expanded=row["status"] != "ok"):
        st.dataframe(_row_table(row), hide_index=True, width="stretch")


# -- label one video ---------------------------------------------------------------------------

def _safe_name(name: str) -> str:
    base, ext = os.path.splitext(os.path.basename(name))
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "video") + ext.lower()


def _saved_upload(upload) -> str:
    """Writes an upload into a new private folder; returns its path."""
    name = _safe_name(upload.name)
    if not name.lower().endswith(VIDEO_EXTENSIONS):
        raise ConfigError(f"upload {upload.name!r}: not a video file name "
                          f"(one of {', '.join(VIDEO_EXTENSIONS)})")
    folder = tempfile.mkdtemp(prefix="upload-", dir=_upload_dir())
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(upload.getbuffer())
    return path


def _model_choices(settings: AppSettings) -> list[str]:
    choices = list(settings.models)
    if settings.output:
        record = _output(settings.output).run_record()
        handle = record.model.handle if record else None
        if handle and handle not in choices:
            choices.append(handle)
    return choices


def _uploaded_sections(upload, guard: PathGuard) -> dict[str, Any]:
    """An uploaded YAML config as sections, its paths checked; ``input``/``output``/``runner`` refused."""
    try:
        raw = yaml.safe_load(upload.getvalue().decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {upload.name!r} is not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {upload.name!r} is not a mapping of sections")
    for section in _PAGE_SECTIONS:
        if section in raw:
            raise ConfigError(f"{section}: the page sets this section; leave it out of the uploaded config")
    for section, key in (("model", "handle"), ("model", "labels"), ("pose", "handle")):
        value = (raw.get(section) or {}).get(key) if isinstance(raw.get(section), dict) else None
        if value:
            guard.check(str(value), f"{section}.{key}")
    return raw


def _base_sections(settings: AppSettings) -> dict[str, Any]:
    """Without ``--config``, a browsed run's own config (``_run.json``), so a video is labelled as the
    run labelled its videos; its ``input``, ``output`` and ``runner`` sections are the page's."""
    if settings.config or not settings.output:
        return {}
    record = _output(settings.output).run_record()
    config = record.config if record else {}
    return {name: dict(keys) for name, keys in config.items()
            if name not in _PAGE_SECTIONS and isinstance(keys, dict)}


def _base_name(settings: AppSettings) -> str:
    if settings.config:
        return settings.config
    return "the run's config (_run.json)" if _base_sections(settings) else "the defaults"


def label_view(settings: AppSettings) -> None:
    from beam_pipeline.api import label_videos

    guard = _guard(settings)
    st.header("Label a video")
    source = st.radio("Video", ["Upload a file", "Path or gs:// URI"], horizontal=True)
    upload, path = None, None
    if source == "Upload a file":
        upload = st.file_uploader(f"Video file (at most {settings.max_upload_mb} MB)",
                                  type=[e.lstrip(".") for e in VIDEO_EXTENSIONS])
    else:
        path = st.text_input("Path or gs:// URI", placeholder="/data/clips/a.mp4 or gs://bucket/clips/a.mp4")
        if settings.allow:
            st.caption("Paths under " + ", ".join(settings.allow) + " or named by the output's rows.")
        else:
            st.caption("Only videos the output's rows name: start the app with --allow DIR to label others "
                       "by path.")
    choices = _model_choices(settings)
    options = [*choices, "another handle (under --allow)"] if choices else ["another handle (under --allow)"]
    picked = st.selectbox("Model", options, help="a --model handle: SavedModel folder (export-movinet), "
                                                 "train output, .tflite file, or TF Hub URL")
    model = picked if picked in choices else st.text_input("Model handle", placeholder="/models/a0_stream")
    base = _base_sections(settings)
    config_upload = st.file_uploader("Config YAML (optional)", type=["yaml", "yml"],
                                     help=f"sections over {_base_name(settings)}; "
                                          "input, output and runner are the page's")
    if not st.button("Label", type="primary", disabled=not (upload or path) or not model):
        if "labelled" in st.session_state:
            _show_labelled(st.session_state["labelled"], guard)
        return
    try:
        if model not in choices and not is_hub_url(model):
            guard.check(model, "model")
        video = _saved_upload(upload) if upload else guard.check(path, "video")
        uploaded = _uploaded_sections(config_upload, guard) if config_upload else {}
        sections = {name: {**base.get(name, {}), **(uploaded.get(name) or {})} for name in {*base, *uploaded}}
        out = tempfile.mkdtemp(prefix="labelled-", dir=_upload_dir())
        with st.spinner(f"labelling {os.path.basename(video)} (the same job as videolabel run)..."):
            model_section = {**sections.pop("model", {}), "handle": model}
            label_videos(video, model_section, config=settings.config, output_dir=out, **sections)
    except (ConfigError, RefusedPath) as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # the page's boundary: one line here, the traceback in the server log
        _log.exception("labelling failed")
        st.error(f"labelling failed: {type(exc).__name__}: {exc}".splitlines()[0])
        return
    st.session_state["labelled"] = out
    _show_labelled(out, guard)


def _warn_if_random(output: RunOutput) -> None:
    """One line above the labels of a run whose model has random weights (``models.weights_note``)."""
    record = output.run_record()
    if record and record.model.random_weights:
        st.warning(random_weights_warning(record.model.handle))


def _show_labelled(out: str, guard: PathGuard) -> None:
    output = RunOutput(out)
    page, _ = output.videos(limit=1)
    if page.empty:
        st.error("the run wrote no video row")
        return
    _warn_if_random(output)
    detail = output.video(page.video_id[0])
    show_video(detail, PathGuard((*guard.roots, out), guard.named))


# -- browse a run ------------------------------------------------------------------------------

def _confusion_chart(confusion: pd.DataFrame) -> alt.LayerChart:
    """The confusion matrix as a square heatmap over every class seen as a label or a prediction."""
    cells = confusion.reset_index().melt(id_vars="label", var_name="prediction", value_name="videos")
    classes = sorted(set(confusion.index) | set(confusion.columns))
    domain = alt.Scale(domain=classes)
    base = alt.Chart(cells).encode(x=alt.X("prediction:N", title="prediction", scale=domain),
                                   y=alt.Y("label:N", title="label", scale=domain))
    return (base.mark_rect().encode(color=alt.Color("videos:Q", scale=alt.Scale(scheme="blues"), legend=None),
                                    tooltip=["label", "prediction", "videos"])
            + base.mark_text(fontSize=13).encode(text="videos:Q")
            ).properties(width=alt.Step(_cell_px(classes)), height=alt.Step(_cell_px(classes)))


def _cell_px(classes: list[str]) -> int:
    return max(20, min(44, 360 // max(1, len(classes))))


def _summary_section(root: str) -> dict[str, Any]:
    summary = _summary(root)
    st.header("Browse the run")
    st.caption(f"{root} — {summary['videos']:,} videos")
    _warn_if_random(_output(root))
    left, right = st.columns(2)
    with left:
        st.markdown("**Videos per split and status**")
        st.dataframe(summary["by_split"], hide_index=True, width="stretch")
        if summary["accuracy"]:
            st.markdown("**Accuracy per split** (labelled videos that got a prediction)")
            st.dataframe(pd.DataFrame(summary["accuracy"]), hide_index=True, width="stretch",
                         column_config={"accuracy": st.column_config.NumberColumn(format="%.3f")})
        else:
            st.caption("no labels in this run: no accuracy")
    with right:
        if not summary["confusion"].empty:
            st.markdown("**Confusion matrix**")
            st.altair_chart(_confusion_chart(summary["confusion"]))
    return summary


def _filters(summary: dict[str, Any]) -> VideoFilter:
    choices = summary["choices"]
    cols = st.columns([3, 2, 2, 2, 2])
    split = cols[0].segmented_control("Split", choices.get("split", []), key="f_split")
    status = cols[1].segmented_control("Status", choices.get("status", []), key="f_status")
    wrong = cols[2].segmented_control("Prediction is", ["wrong", "right"], key="f_wrong")
    label = cols[3].selectbox("Label", ["any", *choices.get("label", [])], key="f_label")
    prediction = cols[4].selectbox("Prediction", ["any", *choices.get("prediction", [])], key="f_prediction")
    return VideoFilter(split=split, status=status, label=None if label == "any" else label,
                       prediction=None if prediction == "any" else prediction,
                       is_error=None if wrong is None else wrong == "wrong")


def browse_view(settings: AppSettings) -> None:
    root = settings.output
    summary = _summary_section(root)
    st.subheader("Videos")
    where = _filters(summary)
    _, total = _page(root, where, 0)
    pages = max(1, -(-total // _PAGE_SIZE))
    page_no = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1,
                              key=f"page-{where}")
    page, total = _page(root, where, (page_no - 1) * _PAGE_SIZE)
    st.caption(f"{total:,} videos match")
    picked = st.dataframe(page, hide_index=True, width="stretch", on_select="rerun",
                          selection_mode="single-row", key=f"table-{where}-{page_no}",
                          column_config={"score": st.column_config.NumberColumn(format="%.3f")})
    if page.empty:
        return
    rows = picked.selection.rows if picked is not None else []
    names = [f"{os.path.basename(u)} ({s if pd.isna(p) else p})"
             for u, p, s in zip(page.uri, page.prediction, page.status)]
    index = st.selectbox("Open a video", range(len(page)), index=rows[0] if rows else 0,
                         format_func=names.__getitem__, key=f"open-{where}-{page_no}-{rows}")
    detail = _video(root, page.video_id.iloc[index], page.split.iloc[index])
    if detail is not None:
        show_video(detail, _guard(settings))
        _more_like_this(root, detail.row)


def _more_like_this(root: str, row: dict[str, Any]) -> None:
    """The videos nearest this one by their embeddings (``output.write_embeddings``), best first."""
    similar = _similar(root)
    if similar is None or row["status"] == "failed":
        return
    st.markdown("**More like this**", help="the videos whose embeddings are nearest this one's "
                                           "(cosine of the run's standardised embeddings)")
    nearest = similar.like(row["video_id"], _SIMILAR_SHOWN)
    st.dataframe(nearest[["uri", "prediction", "label", "split", "similarity"]], hide_index=True,
                 width="stretch", column_config={"similarity": st.column_config.NumberColumn(format="%.3f")})


def failures_view(settings: AppSettings) -> None:
    root = settings.output
    st.header("Failures")
    by_type, examples = _failures(root)
    if not by_type:
        st.success("no failed or partial video in this run")
        return
    st.dataframe(pd.DataFrame(by_type), hide_index=True, width="stretch")
    for row in by_type:
        rows = examples[examples.error_type == row["error_type"]]
        with st.expander(f"{row['error_type']}: {row['videos']} videos"):
            st.dataframe(rows.drop(columns=["video_id"]), hide_index=True, width="stretch")
    names = [f"{e} — {os.path.basename(u)}" for e, u in zip(examples.error_type, examples.uri)]
    index = st.selectbox("Open an example", range(len(examples)), format_func=names.__getitem__)
    detail = _video(root, examples.video_id.iloc[index], examples.split.iloc[index])
    if detail is not None:
        show_video(detail, _guard(settings))


def main(argv: list[str]) -> None:
    settings = AppSettings.parse(argv)
    st.set_page_config(page_title="videolabel", layout="wide")
    views = ["label", *(["browse", "failures"] if settings.output else [])]
    asked = st.query_params.get("view")
    first = views.index(asked) if asked in views else int(len(views) > 1)  # browse a run given one
    view = st.sidebar.radio("View", views, index=first, format_func=_VIEWS.__getitem__)
    st.query_params["view"] = view
    st.sidebar.caption(f"Output: {settings.output or '(none: videolabel app OUTPUT_DIR browses a run)'}")
    if st.sidebar.button("Reload the output"):
        st.cache_data.clear()
        st.cache_resource.clear()
    {"label": label_view, "browse": browse_view, "failures": failures_view}[view](settings)


main(sys.argv[1:])
