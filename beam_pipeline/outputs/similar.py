"""Near-duplicates and "more like this", from a run's embeddings (``output.write_embeddings``).

Embeddings are unit vectors (``transforms.embeddings``), so an inner product is a cosine
similarity. The nearest-neighbour search is faiss's (``faiss-cpu``): an exact flat index up to
``EXACT_UP_TO`` vectors, above that an HNSW graph (``HNSW_LINKS`` links per vector, search breadth
``HNSW_SEARCH``), which answers each query in well under a millisecond at a million vectors
(figures: ``benchmarks/similar.py``, docs/OUTPUT.md).

* ``more_like_this(output, video_id, k)``: the ``k`` videos (or segments) nearest one video.
* ``near_duplicates(output, threshold)``: groups of videos each linked to another of its group by
  a similarity of at least ``threshold`` (connected components of the graph of each video's
  ``NEIGHBOURS`` nearest neighbours above it; scipy), for a whole run.

A re-encoded copy of a video (another size, bitrate or codec, a trimmed start) lands at a
similarity near 1; ``DUPLICATE_THRESHOLD`` is set from the margins measured in
``tests/outputs/test_similar_runs.py`` (docs/OUTPUT.md has them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from beam_pipeline.outputs.run_output import RunOutput
from transforms.schema import EMBEDDING

__all__ = ["DUPLICATE_THRESHOLD", "Embeddings", "NeighbourIndex", "more_like_this", "near_duplicates",
           "read_embeddings"]

#: Below this many vectors the search is exact (a flat index: n x F multiply-adds a query).
EXACT_UP_TO = 50_000
HNSW_LINKS = 32
HNSW_SEARCH = 128
#: Neighbours looked at per video when grouping near-duplicates.
NEIGHBOURS = 10
#: The default similarity at or above which two videos are near-duplicates.
DUPLICATE_THRESHOLD = 0.95

_KEYS = {"videos": ["video_id", "uri", "split", "prediction", "label"],
         "segments": ["video_id", "uri", "split", "segment_index", "start_s", "end_s", "label"]}


class Embeddings(NamedTuple):
    """A table's rows that have an embedding: ``rows`` (their key columns, in ``vectors``' order) and
    ``vectors`` float32 [n, F], unit rows."""

    rows: pd.DataFrame
    vectors: np.ndarray


def read_embeddings(output: RunOutput, table: str = "videos") -> Embeddings:
    """The embeddings of ``table`` (``videos`` or ``segments``), rows without one (failed videos) left out.

    Raises:
        ValueError: the output has no embeddings (one line: run with ``output.write_embeddings``).
    """
    dataset = output.dataset(table)
    if dataset is None or EMBEDDING not in dataset.schema.names:
        raise ValueError(f"{output.root} has no {table} embeddings: run it with "
                         "--set output.write_embeddings=true")
    found = dataset.to_table(columns=[*_KEYS[table], EMBEDDING], filter=ds.field(EMBEDDING).is_valid())
    order = pc.sort_indices(found, sort_keys=[(name, "ascending") for name in _KEYS[table][:2]])
    found = found.take(order)
    column = found[EMBEDDING].combine_chunks()
    width = column.type.list_size
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width).astype(np.float32)
    return Embeddings(found.drop_columns([EMBEDDING]).to_pandas(), vectors)


class NeighbourIndex:
    """faiss inner-product search over unit vectors float32 [n, F]: exact up to ``EXACT_UP_TO``, else
    HNSW (approximate)."""

    def __init__(self, vectors: np.ndarray):
        import faiss

        vectors = np.ascontiguousarray(vectors, np.float32)
        width = vectors.shape[1]
        if len(vectors) <= EXACT_UP_TO:
            self.index = faiss.IndexFlatIP(width)
        else:
            self.index = faiss.IndexHNSWFlat(width, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = HNSW_SEARCH
        self.index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries float32 [q, F] -> (similarities float32 [q, k'], positions int64 [q, k']), best first,
        k' = min(k, n); a position of -1 where the approximate search found fewer."""
        k = min(k, self.index.ntotal)
        return self.index.search(np.ascontiguousarray(queries, np.float32), k)


def more_like_this(output: RunOutput, video_id: str, k: int = 10, table: str = "videos") -> pd.DataFrame:
    """The ``k`` rows of ``table`` nearest the video ``video_id`` (the video itself left out), best
    first, with a ``similarity`` column (cosine, 1 is the same direction).

    Raises:
        ValueError: no embeddings in the output, or ``video_id`` has none (failed, or not in the run).
    """
    found = read_embeddings(output, table)
    videos = found if table == "videos" else read_embeddings(output, "videos")
    mine = np.flatnonzero(videos.rows["video_id"].to_numpy() == video_id)
    if not len(mine):
        raise ValueError(f"video {video_id!r} has no embedding in {output.root} (failed, or not in the run)")
    similarity, position = NeighbourIndex(found.vectors).search(videos.vectors[mine[:1]], k + 1)
    keep = [(p, s) for p, s in zip(position[0], similarity[0])
            if p >= 0 and found.rows["video_id"].iloc[p] != video_id][:k]
    rows = found.rows.iloc[[p for p, _ in keep]].reset_index(drop=True)
    return rows.assign(similarity=np.array([s for _, s in keep], np.float32))


def near_duplicates(output: RunOutput, threshold: float = DUPLICATE_THRESHOLD,
                    neighbours: int = NEIGHBOURS) -> pd.DataFrame:
    """Groups of near-duplicate videos over a whole run: one row per video in a group of two or more,
    with ``group`` (0, 1, ... largest first), ``size`` and ``similarity`` (to its nearest in the group).

    Each video's ``neighbours`` nearest videos at a similarity of at least ``threshold`` are linked;
    a group is a connected component of those links, so a chain of close copies is one group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    found = read_embeddings(output, "videos")
    n = len(found.vectors)
    similarity, position = NeighbourIndex(found.vectors).search(found.vectors, neighbours + 1)
    source = np.repeat(np.arange(n), similarity.shape[1])
    target, weight = position.reshape(-1), similarity.reshape(-1)
    linked = (target >= 0) & (target != source) & (weight >= threshold)
    graph = coo_matrix((np.ones(linked.sum()), (source[linked], target[linked])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    best = np.full(n, np.nan, np.float32)
    np.fmax.at(best, source[linked], weight[linked])
    rows = found.rows.assign(component=component, similarity=best)
    sizes = rows.groupby("component")["video_id"].transform("size")
    rows = rows[sizes > 1].assign(size=sizes[sizes > 1])
    order = rows.groupby("component")["size"].first().sort_values(ascending=False, kind="stable")
    numbering = {component: group for group, component in enumerate(order.index)}
    rows = rows.assign(group=rows["component"].map(numbering)).drop(columns="component")
    return rows.sort_values(["group", "uri"]).reset_index(drop=True)[
        ["group", "size", *_KEYS["videos"], "similarity"]]
