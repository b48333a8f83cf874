"""Embeddings on a real run: re-encoded copies of real and generated clips are each other's nearest
neighbours (recall at 1 and the similarity margin, printed), groups of near-duplicates, "more like
this" from the API and the command line, and the DuckDB query of docs/OUTPUT.md as written.

The model is the demo's fine-tuned MoViNet-A0 stream (the one model of the suite that has learnt
something; a random-weights MoViNet gives every video nearly the same features). Copies: half the
size, x264 at CRF 38, MPEG-4 Part 2 in Matroska, and the first 0.3 s cut.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from beam_pipeline.cli.commands import main
from beam_pipeline.demo.synthetic import motion_frames, write_video
from beam_pipeline.outputs.run_output import RunOutput
from beam_pipeline.outputs.similar import (
    DUPLICATE_THRESHOLD,
    more_like_this,
    near_duplicates,
    read_embeddings,
    standardised,
)
from tests.conftest import IN_MEMORY, SHARED_FIXTURES
from tests.helpers import doc_query
from tests.media import reencoded

COPIES = {"half": {"scale": 0.5}, "crf38": {"crf": 38}, "mpeg4": {"codec": "mpeg4"}, "trim": {"trim_s": 0.3}}
REAL_CLIPS = 12
# One clip a motion: the demo's model is trained to tell the motions apart, so two clips of one motion
# (another square, colour and speed) are alike to it, as two clips of one action are to any action model.
GENERATED = ["moving_right", "moving_left", "moving_up", "moving_down"]


def _original(uri: str) -> str:
    return Path(uri).name.split(".")[0].split("~")[0]


@pytest.fixture(scope="module")
def copies_run(demo_run, tmp_path_factory):
    """(output folder, the names of the clips): real ASL clips (when ../shared is there) and generated
    ones, each with its four copies, labelled with embeddings."""
    folder = tmp_path_factory.mktemp("copies")
    sources = sorted((SHARED_FIXTURES / "videos" / "asl_gestures").glob("*.mkv"))[:REAL_CLIPS]
    rng = np.random.default_rng(11)
    for i, motion in enumerate(GENERATED):
        frames = motion_frames(motion, num_frames=48, width=192, height=144, rng=rng)
        sources.append(write_video(folder / f"generated_{i}.mp4", frames, fps=16))
    for source in sources:
        if source.parent != folder:
            (folder / source.name).symlink_to(source)
        for name, change in COPIES.items():
            suffix = ".mkv" if change.get("codec") == "mpeg4" else ".mp4"
            reencoded(source, folder / f"{source.stem}~{name}{suffix}", **change)
    out = folder / "out"
    model = demo_run[0] / "demo" / "model"
    assert main(["run", "--config", "configs/local.yaml", "--input", str(folder / "*.m*"),
                 "--output", str(out), "--model", str(model), "--set", "sampling.imgz=64",
                 "--set", "sampling.fps=4", "--set", "output.write_embeddings=true", *IN_MEMORY]) == 0
    return out, [source.stem for source in sources]


def _neighbours(vectors: np.ndarray, names: np.ndarray) -> dict[str, float]:
    """Recall at 1 (the nearest other video is a copy of the same clip) and the margins: per video,
    its least similar copy less its most similar other clip (> 0: every copy comes first)."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    same = names[:, None] == names[None, :]
    np.fill_diagonal(same, False)
    recall = same[np.arange(len(names)), similarity.argmax(axis=1)].mean()
    margin = np.where(same, similarity, np.inf).min(axis=1) - np.where(~same, similarity, -np.inf).max(axis=1)
    copy = similarity[same]
    return {"recall_at_1": float(recall), "margin_median": float(np.median(margin)),
            "margin_min": float(margin.min()), "copy_similarity_median": float(np.median(copy)),
            "other_similarity_max": float(similarity[~same & np.isfinite(similarity)].max())}


def test_re_encoded_copies_are_each_others_nearest_neighbours(copies_run):
    out, clips = copies_run
    found = read_embeddings(str(out))
    assert len(found.rows) == len(clips) * (1 + len(COPIES))  # every video decoded and has an embedding
    width = json.loads((out / "_run.json").read_text())["model"]["embedding_width"]
    assert found.vectors.shape[1] == width == 480
    np.testing.assert_allclose(np.linalg.norm(found.vectors, axis=1), 1.0, rtol=1e-5)
    names = np.array([_original(uri) for uri in found.rows["uri"]])
    figures = {}
    for part, rows in {"all": np.ones(len(names), bool), "real": ~np.char.startswith(names, "generated"),
                       "generated": np.char.startswith(names, "generated")}.items():
        if rows.sum() < 2:
            continue
        figures[part] = {"raw": _neighbours(found.vectors[rows], names[rows]),
                         "standardised": _neighbours(standardised(found.vectors)[rows], names[rows])}
    print(json.dumps(figures, indent=1))  # the closing note's figures (pytest -s)
    assert figures["all"]["standardised"]["recall_at_1"] >= 0.9
    assert figures["all"]["standardised"]["margin_median"] > 0
    # standardising is what separates them: raw similarities of different clips crowd near 1
    assert figures["all"]["raw"]["other_similarity_max"] > 0.99


def test_groups_of_near_duplicates_and_more_like_this(copies_run, capsys):
    """Generated clips (one a motion) group exactly with their copies. Different real clips of one
    signer look alike to the demo's model (other-clip similarity up to 0.998, printed): their groups'
    purity is a figure of the model, printed, not asserted."""
    out, clips = copies_run
    groups = near_duplicates(str(out))
    groups = groups.assign(clip=groups["uri"].map(_original))
    assert (groups["similarity"] >= DUPLICATE_THRESHOLD).all()
    clips_of = groups.groupby("group")["clip"].unique()
    generated = [name for name in clips if name.startswith("generated")]
    for name in generated:
        (group,) = [g for g, names in clips_of.items() if name in names] or [None]
        assert group is not None and list(clips_of[group]) == [name], clips_of
        assert (groups["clip"] == name).sum() >= len(COPIES)  # the clip and at least 3 of its 4 copies
    real = groups[~groups["clip"].str.startswith("generated")]
    figures = {"groups": int(groups["group"].nunique()), "real_groups": int(real["group"].nunique()),
               "real_pure": int((real.groupby("group")["clip"].nunique() == 1).sum()),
               "real_videos_grouped": len(real)}

    original = read_embeddings(str(out)).rows.query("uri.str.endswith('generated_0.mp4')")["video_id"].iloc[0]
    nearest = more_like_this(str(out), original, k=len(COPIES))
    assert original not in set(nearest["video_id"])
    assert (nearest["similarity"].diff().dropna() <= 1e-6).all()  # best first
    assert sum(_original(uri) == "generated_0" for uri in nearest["uri"]) >= len(COPIES) - 1
    segments = more_like_this(RunOutput(str(out)), original, k=3, table="segments")
    assert len(segments) == 3 and {"start_s", "end_s", "segment_index"} <= set(segments.columns)

    assert main(["similar", str(out), original, "--k", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("generated_0~") == 2
    assert main(["duplicates", str(out), "--csv", str(out.parent / "groups.csv")]) == 0
    assert f"{groups['group'].nunique()} groups of near-duplicates" in capsys.readouterr().out
    with capsys.disabled():
        print(json.dumps(figures))  # the closing note's figures (pytest -s)


def test_the_docs_nearest_videos_query_runs_as_written(copies_run):
    """DuckDB's answer is the raw cosine ranking of the embeddings as written (no standardising in SQL)."""
    out, _ = copies_run
    query = doc_query("the 5 videos nearest one video (output.write_embeddings)", out)
    rows = duckdb.sql(query.replace("%/match_0042.mp4", "%/generated_1.mp4")).fetchall()
    found = read_embeddings(str(out))
    mine = found.vectors[found.rows["uri"].str.endswith("/generated_1.mp4").to_numpy()][0]
    others = ~found.rows["uri"].str.endswith("/generated_1.mp4").to_numpy()
    cosines = found.vectors[others] @ mine
    best = np.argsort(-cosines)[:5]
    assert [uri for uri, _ in rows] == found.rows["uri"].to_numpy()[others][best].tolist()
    np.testing.assert_allclose([s for _, s in rows], cosines[best], atol=1e-5)


def test_a_run_without_embeddings_says_how_to_get_them(demo_run):
    with pytest.raises(ValueError, match="output.write_embeddings=true"):
        read_embeddings(str(demo_run[0] / "demo" / "results"))
    assert main(["duplicates", str(demo_run[0] / "demo" / "results")]) == 2
