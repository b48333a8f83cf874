"""Mutation fuzzing through the real pipeline: a seeded set of damaged copies of real videos.

Five kinds of damage (``benchmarks.fuzz.MUTATIONS``) of a clip in every container
and codec the tests make go through ``run_job`` on DirectRunner together with the
undamaged sources. The run finishes, every file has exactly one ``videos`` row,
the sources are ``ok``, and every failure says where and why.
``python -m benchmarks.fuzz --mutants N`` runs the same at any size.
"""

from __future__ import annotations

import collections

from beam_pipeline.config import load_config
from beam_pipeline.job.launcher import run_job
from benchmarks.fuzz import MUTATIONS, SOURCES, make_mutants, make_sources, output_rows
from tests.conftest import REPO

SEED = 20261201
MUTANTS = 2 * len(SOURCES) * len(MUTATIONS)  # each source twice with each kind of damage


def test_every_mutant_ends_as_exactly_one_row_and_the_run_finishes(tmp_path, a0_stream):
    sources = make_sources(tmp_path / "sources")
    mutants = make_mutants(sources, tmp_path / "mutants", MUTANTS, SEED)
    originals = {p.name: p.read_bytes() for p in sources}
    changed = sum(m.read_bytes() != originals[m.name.split("-", 2)[2]] for m in mutants)
    assert changed >= 0.95 * MUTANTS  # (a zeroed range can fall on zeros)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("uri\n" + "\n".join(str(p) for p in sources + mutants) + "\n")
    out = tmp_path / "out"
    cfg = load_config(str(REPO / "configs" / "local.yaml"), [
        f'input.paths=["{manifest}"]', f'output.path="{out}"', f'model.handle="{a0_stream}"',
        "sampling.imgz=64", "sampling.decode_timeout_s=30"])
    summary = run_job(cfg, ["--direct_running_mode=in_memory", "--direct_num_workers=1"])

    rows = output_rows(out)
    per_file = collections.Counter(r["uri"] for r in rows)
    assert per_file == collections.Counter(str(p) for p in sources + mutants)
    assert summary.counts["videos"] == len(sources) + MUTANTS
    by_uri = {r["uri"]: r for r in rows}
    assert all(by_uri[str(p)]["status"] == "ok" for p in sources), [by_uri[str(p)] for p in sources]
    damaged = [by_uri[str(p)] for p in mutants]
    for row in damaged:
        if row["status"] == "ok":
            assert row["error_type"] is None and row["frames_sampled"] > 0
        else:
            assert row["error_stage"] in ("open", "probe", "decode", "infer") and row["error_type"], row
            predicted = row["frames_sampled"] > 0 and row["error_stage"] != "infer"
            assert (row["status"] == "partial") == predicted, row
    statuses = collections.Counter(r["status"] for r in damaged)
    assert statuses["failed"] > 0 and statuses["ok"] + statuses["partial"] > 0, statuses  # damage was real
