"""Near-duplicates and "more like this", from a run's embeddings (``output.write_embeddings``).

Embeddings are unit vectors (``transforms.embeddings``), but a model's pooled features share a large
common part (they are mostly positive), so raw cosine similarities of different videos crowd near 1
(up to 0.9999 for different clips of one signer, docs/OUTPUT.md). The search therefore first
standardises the run's embeddings, each dimension by its mean and spread over the run
(``standardised``; from ``STANDARDISE_FROM`` videos up, fewer give no stable spread), and compares
the unit vectors of those: a similarity then says how alike two videos are against the others of
the archive. The nearest-neighbour search is faiss's (``faiss-cpu``): "more like this" asks one
video at a time of an exact flat index (built in about a second at a million videos, 2 GB, a query a
few tens of milliseconds); the groups ask every video, on an exact index up to ``EXACT_UP_TO``
videos and above that an HNSW graph (``HNSW_LINKS`` links a vector, search breadth ``HNSW_SEARCH``),
whose build and million queries take minutes where the exact index would take over an hour
(``benchmarks/embeddings.py``, docs/OUTPUT.md).

* ``more_like_this(output, video_id, k)``: the ``k`` videos (or segments) nearest one video.
* ``near_duplicates(output, threshold)``: groups of videos over a whole run. Two videos are linked
  when each is among the other's ``NEIGHBOURS`` nearest and their similarity is at least
  ``threshold``; a group is a connected component of the links (scipy). Asking for mutual
  neighbours keeps a crowd of merely similar videos from chaining into one group.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as ds

from beam_pipeline.outputs.run_output import RunOutput
from transforms.schema import EMBEDDING

__all__ = ["DUPLICATE_THRESHOLD", "Embeddings", "NeighbourIndex", "SimilarVideos", "more_like_this",
           "near_duplicates", "read_embeddings", "standardised"]

#: Up to this many videos the groups' search is exact (a flat index: n x F multiply-adds a query).
EXACT_UP_TO = 50_000
HNSW_LINKS = 32
HNSW_SEARCH = 128
#: Neighbours looked at per video when grouping near-duplicates (links are mutual among these).
NEIGHBOURS = 5
#: The default similarity (of standardised embeddings) at or above which two linked videos are
#: near-duplicates; set from tests/outputs/test_similar_runs.py's measures (docs/OUTPUT.md).
DUPLICATE_THRESHOLD = 0.9
#: Fewest rows whose per-dimension mean and spread standardise the embeddings.
STANDARDISE_FROM = 50

_VIDEO_COLUMNS = ["video_id", "uri", "split", "prediction", "label"]


class Embeddings(NamedTuple):
    """A run's embeddings of one kind, videos or segments: ``rows`` (``video_id``, ``uri``, ``split``;
    videos also ``prediction`` and ``label``, segments ``segment_index``, ``start_s``, ``end_s``), in
    ``vectors``' order, and ``vectors`` float32 [n, F], unit rows."""

    rows: pd.DataFrame
    vectors: np.ndarray


def read_embeddings(output: str | RunOutput, table: str = "videos") -> Embeddings:
    """The ``embeddings`` table's rows of the whole videos (``table="videos"``) or of their segments
    (``"segments"``), of a run's output (its folder, local or gs://, or its ``RunOutput``), in uri order.

    Raises:
        ValueError: the output has no embeddings (one line: run with ``output.write_embeddings``).
    """
    output = output if isinstance(output, RunOutput) else RunOutput(output)
    dataset = output.dataset("embeddings")
    if dataset is None:
        raise ValueError(f"{output.root} has no embeddings: run it with --set output.write_embeddings=true")
    whole = ds.field("segment_index").is_null()
    found = dataset.to_table(filter=whole if table == "videos" else ~whole)
    found = found.take(pc.sort_indices(found, sort_keys=[("uri", "ascending"), ("video_id", "ascending"),
                                                         ("segment_index", "ascending")]))
    column = found[EMBEDDING].combine_chunks()
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
    rows = found.drop_columns([EMBEDDING]).to_pandas()
    if table == "videos":
        videos = output.dataset("videos").to_table(columns=["video_id", "prediction", "label"]).to_pandas()
        rows = rows.merge(videos, on="video_id", how="left")[_VIDEO_COLUMNS]
    else:
        rows = rows[["video_id", "uri", "split", "segment_index", "start_s", "end_s"]]
    return Embeddings(rows, vectors.astype(np.float32))


def standardised(vectors: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """float32 [n, F] -> float32 [n, F]: each dimension less its mean over ``reference`` (default: the
    vectors), over its spread there, each row then scaled to unit length; as they are (unit rows) when
    ``reference`` has fewer than ``STANDARDISE_FROM`` rows."""
    from transforms.embeddings import l2_normalised

    reference = vectors if reference is None else reference
    if len(reference) < STANDARDISE_FROM:
        return np.asarray(vectors, np.float32)
    mean = reference.mean(axis=0, dtype=np.float64)
    spread = reference.std(axis=0, dtype=np.float64) + 1e-6
    return l2_normalised((vectors - mean) / spread)


class NeighbourIndex:
    """faiss inner-product search over unit vectors float32 [n, F]: exact (a flat index) when ``exact``
    or up to ``EXACT_UP_TO`` vectors, else an HNSW graph (approximate: 0.98 of planted copies found
    first among 100,000 random vectors, ``benchmarks/embeddings.py``)."""

    def __init__(self, vectors: np.ndarray, exact: bool = False):
        import faiss

        vectors = np.ascontiguousarray(vectors, np.float32)
        width = vectors.shape[1]
        if exact or len(vectors) <= EXACT_UP_TO:
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


class SimilarVideos:
    """A run's ``table`` (``videos`` or ``segments``) embeddings, standardised and indexed once, to ask
    for the rows most like any of its videos (``like``); the app keeps one per output."""

    def __init__(self, output: str | RunOutput, table: str = "videos"):
        self.found = read_embeddings(output, table)
        self._videos = self.found if table == "videos" else read_embeddings(output, "videos")
        self._index = NeighbourIndex(standardised(self.found.vectors), exact=True)

    def like(self, video_id: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` rows nearest the video ``video_id`` (the video itself left out), best first, with a
        ``similarity`` column (cosine of the standardised embeddings, ``standardised``).

        Raises:
            ValueError: ``video_id`` has no embedding (it failed, or is not in the run).
        """
        mine = np.flatnonzero(self._videos.rows["video_id"].to_numpy() == video_id)
        if not len(mine):
            raise ValueError(f"video {video_id!r} has no embedding in this run (it failed, or is not in it)")
        query = standardised(self._videos.vectors[mine[:1]], self.found.vectors)
        similarity, position = self._index.search(query, k + 1)
        ids = self.found.rows["video_id"].to_numpy()
        keep = [(p, s) for p, s in zip(position[0], similarity[0]) if p >= 0 and ids[p] != video_id][:k]
        rows = self.found.rows.iloc[[p for p, _ in keep]].reset_index(drop=True)
        return rows.assign(similarity=np.array([s for _, s in keep], np.float32))


def more_like_this(output: str | RunOutput, video_id: str, k: int = 10,
                   table: str = "videos") -> pd.DataFrame:
    """The ``k`` rows of ``table`` nearest the video ``video_id`` of a run's output, best first
    (``SimilarVideos.like``).

    Raises:
        ValueError: no embeddings in the output, or ``video_id`` has none.
    """
    return SimilarVideos(output, table).like(video_id, k)


def near_duplicates(output: str | RunOutput, threshold: float = DUPLICATE_THRESHOLD,
                    neighbours: int = NEIGHBOURS) -> pd.DataFrame:
    """Groups of near-duplicate videos over a whole run: one row per video in a group of two or more,
    with ``group`` (0, 1, ... largest first), ``size`` and ``similarity`` (to its nearest in the group).

    Two videos are linked when each is among the other's ``neighbours`` nearest and their similarity
    (of standardised embeddings) is at least ``threshold``; a group is a connected component of the
    links, so a chain of close copies is one group.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    found = read_embeddings(output, "videos")
    vectors = standardised(found.vectors)
    n = len(vectors)
    similarity, position = NeighbourIndex(vectors).search(vectors, neighbours + 1)
    source = np.repeat(np.arange(n), similarity.shape[1])
    target, weight = position.reshape(-1), similarity.reshape(-1)
    near = (target >= 0) & (target != source) & (weight >= threshold)
    links = source[near].astype(np.int64) * n + target[near]  # a -> b as one int64 each
    mutual = near.copy()
    mutual[near] = np.isin(target[near].astype(np.int64) * n + source[near], links)  # b -> a too
    graph = coo_matrix((np.ones(mutual.sum()), (source[mutual], target[mutual])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    best = np.full(n, np.nan, np.float32)
    np.fmax.at(best, source[mutual], weight[mutual])
    rows = found.rows.assign(component=component, similarity=best)
    sizes = rows.groupby("component")["video_id"].transform("size")
    rows = rows[sizes > 1].assign(size=sizes[sizes > 1])
    order = rows.groupby("component")["size"].first().sort_values(ascending=False, kind="stable")
    numbering = {component: group for group, component in enumerate(order.index)}
    rows = rows.assign(group=rows["component"].map(numbering)).drop(columns="component")
    return rows.sort_values(["group", "uri"]).reset_index(drop=True)[
        ["group", "size", *_VIDEO_COLUMNS, "similarity"]]
