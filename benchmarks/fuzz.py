"""Mutation fuzzing through the real pipeline: every mutant of a real video ends as exactly one row.

Source videos are generated in every container and codec the tests use; each
mutant is a seeded copy with one of five kinds of damage (``MUTATIONS``): bit
flips, a zeroed range, truncation, a duplicated range, or noise in the header.
The mutants (and the sources) go through ``videolabel run`` on DirectRunner;
the run must finish, with exactly one ``videos`` row per file. Prints counts by
status and error type and writes JSON.

    python -m benchmarks.fuzz --mutants 2000 [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import print_table, write_json

__all__ = ["MUTATIONS", "SOURCES", "make_mutants", "make_sources", "mutate", "output_rows"]

# name -> (codec, pix_fmt): every container and codec the test media are made in
SOURCES = {
    "h264.mp4": ("libx264", "yuv420p"),
    "h264.mov": ("libx264", "yuv420p"),
    "h264.mkv": ("libx264", "yuv420p"),
    "mpeg4.mkv": ("mpeg4", "yuv420p"),
    "h264.ts": ("libx264", "yuv420p"),
    "mpeg2.mpg": ("mpeg2video", "yuv420p"),
    "vp8.webm": ("libvpx", "yuv420p"),
    "vp9.webm": ("libvpx-vp9", "yuv420p"),
    "msmpeg4.avi": ("msmpeg4", "yuv420p"),
    "h264.avi": ("libx264", "yuv420p"),
    "anim.gif": ("gif", "rgb8"),
    "ffv1.mkv": ("ffv1", "yuv420p"),
}


def _bit_flips(data: bytearray, rng: np.random.Generator) -> None:
    for pos in rng.integers(0, len(data), int(rng.integers(1, 33))):
        data[pos] ^= 1 << int(rng.integers(0, 8))


def _zeroed_range(data: bytearray, rng: np.random.Generator) -> None:
    length = int(rng.integers(1, max(2, len(data) // 20)))
    start = int(rng.integers(0, len(data) - length))
    data[start:start + length] = bytes(length)


def _truncation(data: bytearray, rng: np.random.Generator) -> None:
    del data[int(len(data) * rng.uniform(0.05, 0.95)):]


def _duplicated_range(data: bytearray, rng: np.random.Generator) -> None:
    length = int(rng.integers(1, max(2, len(data) // 10)))
    start = int(rng.integers(0, len(data) - length))
    at = int(rng.integers(0, len(data)))
    data[at:at] = data[start:start + length]


def _header_noise(data: bytearray, rng: np.random.Generator) -> None:
    head = min(len(data), 1024)
    for pos in rng.integers(0, head, int(rng.integers(1, 17))):
        data[pos] = int(rng.integers(0, 256))


MUTATIONS: dict[str, Callable[[bytearray, np.random.Generator], None]] = {
    "bitflip": _bit_flips, "zeroed": _zeroed_range, "truncated": _truncation,
    "duplicated": _duplicated_range, "header": _header_noise,
}


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """``data`` with one ``kind`` of damage (a key of ``MUTATIONS``), drawn from ``rng``."""
    damaged = bytearray(data)
    MUTATIONS[kind](damaged, rng)
    return bytes(damaged)


def make_sources(folder: Path) -> list[Path]:
    """One short clip (20 frames, 64x48, 10 fps) per entry of ``SOURCES`` in ``folder``."""
    from tests.media import odd_container

    folder.mkdir(parents=True, exist_ok=True)
    return [odd_container(folder / name, codec, pix_fmt=pix_fmt)
            for name, (codec, pix_fmt) in SOURCES.items()]


def make_mutants(sources: list[Path], folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` mutants, sources and kinds taken in turn, each from its own seeded generator."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds = sorted(MUTATIONS)
    paths = []
    for i in range(count):
        source, kind = sources[i % len(sources)], kinds[(i // len(sources)) % len(kinds)]
        rng = np.random.default_rng([seed, i])
        path = folder / f"m{i:05d}-{kind}-{source.name}"
        path.write_bytes(mutate(source.read_bytes(), kind, rng))
        paths.append(path)
    return paths


def output_rows(output: Path) -> list[dict]:
    """The ``videos`` rows of a run's output."""
    import pyarrow.dataset as ds

    table = ds.dataset(output / "videos", format="parquet", partitioning="hive").to_table(
        columns=["uri", "status", "error_stage", "error_type", "frames_sampled"])
    return table.to_pylist()


def _export(workdir: Path) -> Path:
    model = workdir / "a0_stream_4"
    if not (model / "saved_model.pb").exists():
        subprocess.run([sys.executable, "-m", "beam_pipeline", "export-movinet", "--model-id", "a0",
                        "--mode", "stream", "--num-classes", "4", "--output", str(model)],
                       check=True, capture_output=True)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "videolabel-fuzz"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    sources = make_sources(workdir / "sources")
    mutants = make_mutants(sources, workdir / f"mutants-{args.seed}", args.mutants, args.seed)
    files = sources + mutants
    manifest = workdir / "manifest.csv"
    manifest.write_text("uri\n" + "\n".join(str(p) for p in files) + "\n")
    out = workdir / "out"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipeline", "run", "--input", str(manifest), "--output", str(out),
         "--model", str(_export(workdir)), "--overwrite", "--set", "sampling.imgz=64",
         "--set", "sampling.decode_timeout_s=30", "--runner=DirectRunner",
         "--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"the run failed (exit {proc.returncode}): the promise does not hold")
    rows = output_rows(out)
    per_file = collections.Counter(r["uri"] for r in rows)
    missing = [str(p) for p in files if per_file[str(p)] == 0]
    doubled = [uri for uri, n in per_file.items() if n > 1]
    kind_of = {str(p): p.name.split("-")[1] for p in mutants}
    mutant_rows = [r for r in rows if r["uri"] in kind_of]
    by_status = collections.Counter(r["status"] for r in mutant_rows)
    by_error = collections.Counter((r["status"], r["error_stage"], r["error_type"]) for r in mutant_rows)
    errors = sorted(by_error.items(), key=lambda kv: -kv[1])
    by_kind = collections.Counter((kind_of[r["uri"]], r["status"]) for r in mutant_rows)
    print_table(f"{args.mutants} mutants of {len(sources)} sources (seed {args.seed}), {wall_s:.0f} s",
                ["status", "error stage", "error type", "mutants"],
                [[s, st or "", t or "", n] for (s, st, t), n in errors])
    print_table("by mutation", ["mutation", *sorted(by_status)],
                [[k, *(by_kind[(k, s)] for s in sorted(by_status))] for k in sorted(MUTATIONS)])
    print(f"\nrows: {len(rows)} for {len(files)} files; missing {len(missing)}, doubled {len(doubled)}")
    write_json(Path("benchmarks/results/fuzz.json"), {
        "mutants": args.mutants, "seed": args.seed, "sources": sorted(SOURCES), "wall_s": round(wall_s, 1),
        "files": len(files), "rows": len(rows), "missing": missing, "doubled": doubled,
        "by_status": dict(by_status),
        "by_error": [{"status": s, "error_stage": st, "error_type": t, "mutants": n}
                     for (s, st, t), n in errors],
        "by_mutation": {k: {s: by_kind[(k, s)] for s in sorted(by_status)} for k in sorted(MUTATIONS)},
        "run": json.loads((out / "_run.json").read_text())["counts"],
    })
    return 0 if not missing and not doubled else 1


if __name__ == "__main__":
    raise SystemExit(main())
