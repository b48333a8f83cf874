"""The output schema, declared once: pyarrow schemas for the videos, frames, segments and embeddings tables.

``SCHEMA_VERSION`` changes whenever a column is added, removed or retyped, or a table
is added (2: the ``segments`` table; 3: the ``embeddings`` table of ``output.write_embeddings``).
``split`` is a Hive partition (``split=<name>/`` directories), so it is not a
column inside the files; readers that use the partitioning see it as one.
``record_batch`` builds a table's rows against its schema, by column name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

__all__ = ["EMBEDDING", "FRAMES_SCHEMA", "SCHEMA_VERSION", "SEGMENTS_SCHEMA", "VIDEOS_SCHEMA",
           "embeddings_schema", "frames_schema", "record_batch"]

SCHEMA_VERSION = 3

_PREDICTION = [
    pa.field("prediction", pa.string()),
    pa.field("prediction_index", pa.int32()),
    pa.field("score", pa.float32()),
    pa.field("top_k_labels", pa.list_(pa.string())),
    pa.field("top_k_scores", pa.list_(pa.float32())),
    pa.field("is_error", pa.bool_()),
]

VIDEOS_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error_stage", pa.string()),
    pa.field("error_type", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("codec", pa.string()),
    pa.field("frames_decoded", pa.int64()),
    pa.field("frames_sampled", pa.int64()),
    *_PREDICTION,
    pa.field("model", pa.string()),
    pa.field("config_hash", pa.string()),
    pa.field("run_id", pa.string()),
    pa.field("schema_version", pa.int32()),
], metadata={"videolabel.schema_version": str(SCHEMA_VERSION), "videolabel.table": "videos"})

FRAMES_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("frame_index", pa.int64(), nullable=False),
    pa.field("timestamp_s", pa.float64(), nullable=False),
    pa.field("clip_index", pa.int32(), nullable=False),
    pa.field("label", pa.string()),
    *_PREDICTION,
], metadata={"videolabel.schema_version": str(SCHEMA_VERSION), "videolabel.table": "frames"})

#: One row per stretch of a video where one predicted label holds (``transforms.segments``):
#: ``label`` is the predicted class; ``true_label`` and ``overlap_s`` are null where no label is known.
SEGMENTS_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    pa.field("segment_index", pa.int32(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("label", pa.string(), nullable=False),
    pa.field("mean_score", pa.float32(), nullable=False),
    pa.field("max_score", pa.float32(), nullable=False),
    pa.field("frames", pa.int64(), nullable=False),
    pa.field("true_label", pa.string()),
    pa.field("overlap_s", pa.float64()),
], metadata={"videolabel.schema_version": str(SCHEMA_VERSION), "videolabel.table": "segments"})

_PROBS = pa.field("probs", pa.list_(pa.float32()))
_KEYPOINTS = pa.field("keypoints", pa.list_(pa.float32()))


#: The vector column of the ``embeddings`` table.
EMBEDDING = "embedding"


def embeddings_schema(width: int) -> pa.Schema:
    """The ``embeddings`` table (``output.write_embeddings``): a row for each video that has frames
    (``segment_index``, ``start_s`` and ``end_s`` null) and one for each of its segments (as in
    ``segments``), each with ``embedding``, an L2-normalised vector of ``width`` float32 (a fixed-size
    list, never null: a video without frames has no row; DuckDB reads it as ``FLOAT[]``)."""
    return pa.schema([
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("segment_index", pa.int32()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field(EMBEDDING, pa.list_(pa.float32(), width), nullable=False),
    ], metadata={"videolabel.schema_version": str(SCHEMA_VERSION), "videolabel.table": "embeddings",
                 "videolabel.embedding_width": str(width)})


def frames_schema(write_probs: bool, write_keypoints: bool = False) -> pa.Schema:
    """The frames schema, plus ``probs`` (every class's probability) and ``keypoints``
    (17 joints x (y, x, score), flattened) when asked for."""
    schema = FRAMES_SCHEMA.append(_PROBS) if write_probs else FRAMES_SCHEMA
    return schema.append(_KEYPOINTS) if write_keypoints else schema


def record_batch(columns: Mapping[str, Any], schema: pa.Schema) -> pa.RecordBatch:
    """A record batch of ``schema`` from its columns by name: Arrow arrays, numpy arrays or lists,
    all of one length, each safely cast to its field's type (no truncation, no overflow).

    Raises:
        ValueError: a column the schema lacks, a field without a column, or a null in a
            non-nullable field.
        pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError: a column that does not cast to
            its field's type.
    """
    unknown, missing = sorted(set(columns) - set(schema.names)), sorted(set(schema.names) - set(columns))
    if unknown or missing:
        raise ValueError(f"columns not in the schema: {unknown}; schema fields without a column: {missing}")
    arrays = [_array(columns[f.name]).cast(f.type) for f in schema]
    nulls = [f.name for f, array in zip(schema, arrays) if not f.nullable and array.null_count]
    if nulls:
        raise ValueError(f"nulls in non-nullable columns: {nulls}")
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(values: Any) -> pa.Array:
    return values if isinstance(values, pa.Array) else pa.array(values)
