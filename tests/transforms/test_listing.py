"""ListVideos and stable splits, on a real Beam runner; the start-up check of a manifest."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipeline.config import ConfigError
from beam_pipeline.job.checks import check_inputs
from transforms.listing import ListVideos, ref_from_row
from transforms.splits import UNLABELLED, hash_split, stable_video_id

RATIOS = {"train": 0.8, "valid": 0.1, "test": 0.1}


def test_glob_lists_videos_by_extension_once_each(mixed_videos):
    folder = mixed_videos["dir"]
    expected = sorted(list(mixed_videos["good"]) + [mixed_videos["corrupt"]])
    with TestPipeline() as p:
        refs = p | ListVideos((f"{folder}/*", f"{folder}/*.mp4"), extensions=(".mp4", ".mkv"),
                              ratios=RATIOS, salt="s")
        names = refs | beam.Map(lambda r: r.uri.rsplit("/", 1)[-1])
        assert_that(names, equal_to(expected))
        ids = refs | "Ids" >> beam.Map(lambda r: (r.video_id == stable_video_id(r.uri), r.label))
        assert_that(ids, equal_to([(True, None)] * len(expected)), label="StableIds")


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_manifest_rows_become_refs_and_bad_rows_become_error_refs(tmp_path, kind):
    rows = [
        {"uri": "a.mp4", "label": "jump", "split": "test", "video_id": "vid-a"},
        {"uri": "/abs/b.mp4", "label": "run", "split": "", "video_id": ""},
        {"uri": "", "label": "orphan", "split": "train", "video_id": ""},
    ]
    path = tmp_path / f"m.{kind}"
    if kind == "csv":
        path.write_text("uri,label,split,video_id\n" + "".join(
            f"{r['uri']},{r['label']},{r['split']},{r['video_id']}\n" for r in rows))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    b_split = hash_split(stable_video_id("/abs/b.mp4"), RATIOS, "s")
    expected = [
        ("vid-a", f"{tmp_path}/a.mp4", "jump", "test", None),
        (stable_video_id("/abs/b.mp4"), "/abs/b.mp4", "run", b_split, None),
        (stable_video_id(f"{path}#row=3"), f"{path}#row=3", "orphan", "train", "has no uri"),
    ]
    if kind == "jsonl":
        row4 = stable_video_id(f"{path}#row=4")
        expected.append((row4, f"{path}#row=4", None, UNLABELLED, "is not JSON"))

    def shown(ref):  # the error reduced to the phrase that says what is wrong
        reason = next((p for p in ("has no uri", "is not JSON") if ref.error and p in ref.error), None)
        return (*ref[:4], reason)

    with TestPipeline() as p:
        refs = p | ListVideos((str(path),), extensions=(".mp4",), ratios=RATIOS, salt="s")
        assert_that(refs | beam.Map(shown), equal_to(expected))


def test_bad_cells_are_clear_errors():
    with pytest.raises(ValueError, match="has no uri"):
        ref_from_row({"label": "x"}, "m.csv", RATIOS, "s")
    with pytest.raises(ValueError, match=r"label=\['a', 'b'\] is not a single value"):
        ref_from_row({"uri": "a.mp4", "label": ["a", "b"]}, "m.jsonl", RATIOS, "s")


def test_a_video_without_a_label_or_a_given_split_is_unlabelled_and_gets_its_hash_split_once_labelled(
        tmp_path, mixed_videos):
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,label,split\nx.mp4,,\ny.mp4,,valid\nz.mp4,walk,\n")
    with TestPipeline() as p:
        refs = p | ListVideos((str(manifest), f"{mixed_videos['dir']}/*"), extensions=(".mp4", ".mkv"),
                              ratios=RATIOS, salt="s")
        shown = refs | beam.Map(lambda r: (r.uri.rsplit("/", 1)[-1], r.split))
        globbed = sorted(list(mixed_videos["good"]) + [mixed_videos["corrupt"]])
        z_split = hash_split(stable_video_id(str(tmp_path / "z.mp4")), RATIOS, "s")
        assert_that(shown, equal_to([("x.mp4", UNLABELLED), ("y.mp4", "valid"), ("z.mp4", z_split),
                                     *((name, UNLABELLED) for name in globbed)]))
    labelled = ref_from_row({"uri": str(tmp_path / "x.mp4"), "label": "walk"}, str(manifest), RATIOS, "s")
    assert labelled.split == hash_split(stable_video_id(str(tmp_path / "x.mp4")), RATIOS, "s")


def test_hash_split_is_stable_and_follows_ratios():
    ids = [f"video-{i}" for i in range(10_000)]
    first = [hash_split(i, RATIOS, "salt") for i in ids]
    assert first == [hash_split(i, RATIOS, "salt") for i in ids]
    counts = Counter(first)
    for name, ratio in RATIOS.items():
        assert abs(counts[name] / len(ids) - ratio) < 0.02
    other_salt = [hash_split(i, RATIOS, "pepper") for i in ids]
    assert sum(a != b for a, b in zip(first, other_salt)) > 1000


def test_segment_rows_make_one_video_with_sorted_segments(tmp_path):
    path = tmp_path / "segments.csv"
    path.write_text("uri,start_s,end_s,label\n"
                    "match.mp4,4.0,6.5,goal\n"
                    "match.mp4,0,2,kickoff\n"
                    "solo.mp4,1,3,dunk\n"
                    "whole.mp4,,,run\n"
                    "bad.mp4,5,5,goal\n"
                    "bad2.mp4,1,x,goal\n"
                    "bad3.mp4,1,2,\n")
    with TestPipeline() as p:
        refs = p | ListVideos((str(path),), extensions=(".mp4",), ratios=RATIOS, salt="s")
        shown = refs | beam.Map(lambda r: (r.uri.rsplit("/", 1)[-1], r.label, r.segments, bool(r.error)))
        assert_that(shown, equal_to([
            ("match.mp4", None, ((0.0, 2.0, "kickoff"), (4.0, 6.5, "goal")), False),
            ("solo.mp4", "dunk", ((1.0, 3.0, "dunk"),), False),
            ("whole.mp4", "run", (), False),
            ("bad.mp4", "goal", (), True),
            ("bad2.mp4", "goal", (), True),
            ("bad3.mp4", None, (), True),
        ]))
    with pytest.raises(ValueError, match="needs 0 <= start_s < end_s"):
        ref_from_row({"uri": "a.mp4", "start_s": "5", "end_s": "5", "label": "x"}, "m.csv", RATIOS, "s")
    with pytest.raises(ValueError, match="has no label"):
        ref_from_row({"uri": "a.mp4", "start_s": "1", "end_s": "2"}, "m.csv", RATIOS, "s")


def _write_manifest(path, rows: list[dict]) -> None:
    kind = path.suffix
    if kind == ".csv":
        path.write_text(",".join(rows[0]) + "\n" + "".join(",".join(r.values()) + "\n" for r in rows))
    elif kind == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
def test_the_start_up_check_reads_a_manifests_header_not_its_rows(tmp_path, kind, monkeypatch):
    path = tmp_path / f"big.{kind}"
    _write_manifest(path, [{"uri": f"/v/{hashlib.sha256(str(i).encode()).hexdigest()}.mp4", "label": "jump"}
                           for i in range(20_000)])
    read: list[int] = []

    class CountingFile(io.FileIO):
        def readinto(self, buffer):
            read.append(super().readinto(buffer))
            return read[-1]

    def counting_open(path, *_args, **_kwargs):
        return io.BufferedReader(CountingFile(path))

    monkeypatch.setattr(FileSystems, "open", staticmethod(counting_open))
    check_inputs([str(path)])
    assert 0 < sum(read) < path.stat().st_size / 10
    no_uri = tmp_path / f"no_uri.{kind}"
    _write_manifest(no_uri, [{"url": "/v/a.mp4", "label": "jump"}])
    with pytest.raises(ConfigError, match=r"has no 'uri' column \(columns: \['url', 'label'\]\)"):
        check_inputs([str(no_uri)])


def test_garbage_rows_after_a_good_header_pass_the_check_and_become_failed_rows(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"uri": "/v/a.mp4", "label": "jump"}\n{not json\n[1, 2]\n')
    check_inputs([str(path)])

    def shown(ref):  # the uri's file name, and what is wrong with the row (after "<manifest>#row=N: ")
        return ref.uri.rsplit("/", 1)[-1], ref.error and ref.error.split(": ", 1)[1].split(" (")[0]

    with TestPipeline() as p:
        refs = p | ListVideos((str(path),), extensions=(".mp4",), ratios=RATIOS, salt="s")
        assert_that(refs | beam.Map(shown), equal_to([
            ("a.mp4", None), ("m.jsonl#row=2", "line 2 is not JSON"),
            ("m.jsonl#row=3", "line 3 is not a JSON object")]))
