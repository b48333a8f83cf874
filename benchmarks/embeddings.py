"""What ``output.write_embeddings`` costs, and what searching the embeddings costs at archive scale.

1. The run: ``make bench``'s clip (10 s, 340x256, 30 fps, H.264), ``--videos`` copies, MoViNet-A0
   stream on LiteRT at 5 fps, ``configs/local.yaml`` on two worker processes, once without and once
   with ``output.write_embeddings``: CPU seconds per video (the launcher and every process under it),
   the steady rate, and the bytes per video of each table.
2. The search (``beam_pipeline.outputs.similar``): faiss over ``--vectors`` random unit vectors of 480
   floats with planted copies: the exact flat index and the HNSW graph (build seconds, queries a
   second, memory, and for HNSW the recall at 10 of the exact neighbours), projected linearly to one
   million videos (HNSW's build grows as n log n: the projection is a floor).

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
    probe = vectors[np.random.default_rng(1).choice(n, queries, replace=False)]
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
                       "bytes": int(faiss.serialize_index(index).size), "neighbours": neighbours}
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
    default = os.path.join(tempfile.gettempdir(), "videolabel-bench-embeddings")
    parser.add_argument("--workdir", default=default)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    model = a0_stream_model(workdir)
    inputs = clip_set(workdir, args.videos)
    runs = {"without": _run(inputs, workdir / "without", model, False),
            "with": _run(inputs, workdir / "with", model, True)}
    on, off = runs["with"], runs["without"]
    added = {"cpu_s_per_video": round(on["cpu_s_per_video"] - off["cpu_s_per_video"], 4),
             "cpu_share": round(on["cpu_s_per_video"] / off["cpu_s_per_video"] - 1, 4),
             "bytes_per_video": on["bytes_per_video_total"] - off["bytes_per_video_total"]}
    tables = sorted({t for r in runs.values() for t in r["bytes_per_video"]})
    print_table(f"{args.videos} videos, A0 stream (LiteRT) at 5 fps, two workers: output.write_embeddings",
                ["run", "CPU s/video", "steady videos/s", *(f"{t} B/video" for t in tables)],
                [[name, r["cpu_s_per_video"], r["steady_videos_per_s"], *(r["bytes_per_video"].get(t, 0)
                                                                          for t in tables)]
                 for name, r in runs.items()])
    print(f"\nembeddings add {added['cpu_s_per_video']} CPU s a video ({added['cpu_share']:+.1%}) and "
          f"{added['bytes_per_video']} bytes a video")
    search = _search(args.vectors)
    print_table(f"nearest neighbours over {args.vectors:,} embeddings of {WIDTH} floats (faiss, this "
                "machine), and projected to 1M",
                ["index", "build s", "queries/s", "MB", "recall@10", "1M: build s", "1M: GB"],
                [[kind, f["build_s"], f["queries_per_s"], round(f["bytes"] / 1e6), f.get("recall_at_10", 1.0),
                  f["million"]["build_s"], f["million"]["gb"]]
                 for kind, f in ((kind, search[kind]) for kind in ("flat", "hnsw"))])
    result = {"runs": runs, "added": added, "search": search, "machine": machine()}
    write_json(RESULTS / "embeddings.json", result)
    return result


if __name__ == "__main__":
    main()
