"""What ``output.write_embeddings`` costs, and what searching the embeddings costs at archive scale.

1. The run: ``make bench``'s clip (10 s, 340x256, 30 fps, H.264), ``--videos`` copies, MoViNet-A0
   stream on LiteRT at 5 fps, ``configs/local.yaml`` on two worker processes, once without and once
   with ``output.write_embeddings``, ``--repeats`` times in turn: CPU seconds per video (the launcher
   and every process under it) and the steady rate, the median of the repeats with their range. The
   bytes per video of each table come from the same pair of runs over 24 different generated clips
   (copies of one clip would give one embedding, which Parquet stores once).
2. The search (``beam_pipeline.outputs.similar``): faiss over ``--vectors`` random unit vectors of 480
   floats, half of them with a planted near copy: the exact flat index and the HNSW graph (build
   seconds, queries a second in batches, memory, how often a vector's copy comes first, and HNSW's
   recall at 10 of the exact neighbours: random vectors have no structure, HNSW's worst case),
   projected linearly to one million videos (HNSW's build grows as n log n: the projection is a floor).

Prints tables and writes ``benchmarks/results/embeddings.json``.

    .venv/bin/python -m benchmarks.embeddings [--videos 96] [--vectors 100000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import clip_set, machine, print_table, write_json
from benchmarks.startup import a0_stream_model

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
WIDTH = 480  # MoViNet-A0's features
MILLION = 1_000_000


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _distinct_set(workdir: Path) -> str:
    """24 different generated clips (4 motions, 2 sizes, 2 rates, 2 s), written once; their glob."""
    from beam_pipeline.demo.synthetic import make_labelled_set

    folder = workdir / "distinct"
    if not (folder / "manifest.csv").exists():
        make_labelled_set(str(folder), per_class=6, seed=3)
    return str(folder / "*.mp4")


def _run(inputs: str, out: Path, model: str, embeddings: bool) -> dict:
    cpu = _children_cpu_s()
    command = [sys.executable, "-m", "beam_pipeline", "run", "--config", str(REPO / "configs" / "local.yaml"),
               "--input", inputs, "--output", str(out), "--model", model, "--overwrite",
               "--direct_running_mode=multi_processing", "--direct_num_workers=2",
               "--set", f"output.write_embeddings={str(embeddings).lower()}"]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError(f"the run exited {done.returncode}:\n{done.stderr[-3000:]}")
    record = json.loads((out / "_run.json").read_text())
    videos = record["counts"]["videos"]
    sizes = {table.name: sum(p.stat().st_size for p in table.rglob("*.parquet")) / videos
             for table in sorted(out.iterdir()) if table.is_dir()}
    return {"videos": videos, "cpu_s_per_video": round((_children_cpu_s() - cpu) / videos, 4),
            "steady_videos_per_s": record["throughput"]["steady_videos_per_s"],
            "bytes_per_video": {name: round(size) for name, size in sizes.items()},
            "bytes_per_video_total": round(sum(sizes.values()))}


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors of WIDTH floats: n / 2 random ones, each with a near copy (noise 0.05)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n - n // 2, WIDTH)).astype(np.float32)
    copies = base[: n // 2] + rng.normal(scale=0.05, size=(n // 2, WIDTH)).astype(np.float32)
    vectors = np.concatenate([base, copies])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _search(n: int, queries: int = 2000) -> dict:
    import faiss

    from beam_pipeline.outputs import similar

    vectors = _vectors(n)
    originals = np.random.default_rng(1).choice(n // 2, queries, replace=False)  # each has a copy
    probe, copies = vectors[originals], originals + (n - n // 2)
    found = {}
    for kind in ("flat", "hnsw"):
        start = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(WIDTH)
        else:
            index = faiss.IndexHNSWFlat(WIDTH, similar.HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = similar.HNSW_SEARCH
        index.add(vectors)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        _, neighbours = index.search(probe, 10)
        query_s = (time.perf_counter() - start) / queries
        found[kind] = {"build_s": round(build_s, 2), "queries_per_s": round(1 / query_s),
                       "bytes": int(faiss.serialize_index(index).size), "neighbours": neighbours,
                       "copy_first": round(float(np.mean(neighbours[:, 1] == copies)), 4)}
    exact, approximate = found["flat"].pop("neighbours"), found["hnsw"].pop("neighbours")
    found["hnsw"]["recall_at_10"] = round(float(np.mean([len(set(a) & set(e)) / 10
                                                        for a, e in zip(approximate, exact)])), 4)
    scale = MILLION / n
    for figures in found.values():
        figures["million"] = {"build_s": round(figures["build_s"] * scale),
                              "gb": round(figures["bytes"] * scale / 1e9, 2)}
    found["flat"]["million"]["queries_per_s"] = round(found["flat"]["queries_per_s"] / scale, 1)
    found["vectors"] = n
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    default = os.path.join(tempfile.gettempdir(), "videolabel-bench-embeddings")
    parser.add_argument("--workdir", default=default)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    model = a0_stream_model(workdir)
    inputs = clip_set(workdir, args.videos)
    repeats = {"without": [], "with": []}
    for _ in range(args.repeats):
        for name, on in (("without", False), ("with", True)):
            repeats[name].append(_run(inputs, workdir / name, model, on))
    runs = {name: {"videos": done[0]["videos"],
                   "cpu_s_per_video": float(np.median([r["cpu_s_per_video"] for r in done])),
                   "cpu_s_per_video_range": [min(r["cpu_s_per_video"] for r in done),
                                             max(r["cpu_s_per_video"] for r in done)],
                   "steady_videos_per_s": float(np.median([r["steady_videos_per_s"] for r in done]))}
            for name, done in repeats.items()}
    distinct = _distinct_set(workdir)
    for name, on in (("without", False), ("with", True)):
        sizes = _run(distinct, workdir / f"distinct_{name}", model, on)["bytes_per_video"]
        runs[name]["bytes_per_video"] = sizes
        runs[name]["bytes_per_video_total"] = sum(runs[name]["bytes_per_video"].values())
    on, off = runs["with"], runs["without"]
    added = {"cpu_s_per_video": round(on["cpu_s_per_video"] - off["cpu_s_per_video"], 4),
             "cpu_share": round(on["cpu_s_per_video"] / off["cpu_s_per_video"] - 1, 4),
             "bytes_per_video": on["bytes_per_video_total"] - off["bytes_per_video_total"]}
    tables = sorted({t for r in runs.values() for t in r["bytes_per_video"]})
    print_table(f"{args.videos} videos, A0 stream (LiteRT) at 5 fps, two workers: output.write_embeddings "
                "(bytes: over 24 different clips)",
                ["run", "CPU s/video (median)", "range", "steady videos/s",
                 *(f"{t} B/video" for t in tables)],
                [[name, r["cpu_s_per_video"], "-".join(map(str, r["cpu_s_per_video_range"])),
                  r["steady_videos_per_s"], *(r["bytes_per_video"].get(t, 0) for t in tables)]
                 for name, r in runs.items()])
    print(f"\nembeddings add {added['cpu_s_per_video']} CPU s a video ({added['cpu_share']:+.1%}) and "
          f"{added['bytes_per_video']} bytes a video")
    search = _search(args.vectors)
    print_table(f"nearest neighbours over {args.vectors:,} embeddings of {WIDTH} floats (faiss, this "
                "machine), and projected to 1M",
                ["index", "build s", "queries/s", "MB", "copy first", "recall@10", "1M: build s", "1M: GB"],
                [[kind, f["build_s"], f["queries_per_s"], round(f["bytes"] / 1e6), f["copy_first"],
                  f.get("recall_at_10", 1.0), f["million"]["build_s"], f["million"]["gb"]]
                 for kind, f in ((kind, search[kind]) for kind in ("flat", "hnsw"))])
    result = {"runs": runs, "added": added, "search": search, "machine": machine()}
    write_json(RESULTS / "embeddings.json", result)
    return result


if __name__ == "__main__":
    main()
