"""Job configuration: YAML loaded into frozen pydantic models, validated at load.

Job semantics (what to read, how to sample, which model, where to write) live
here; runner settings stay a plain mapping that becomes Beam PipelineOptions
(see ``beam_pipeline.job.options``). The models declare each key's type and range;
pydantic checks them, and every problem raises ``ConfigError`` with one line
naming the bad key and value, before any video is read.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetPydanticSchema,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, core_schema

from models.movinet_variants import MODEL_IDS, MODEL_MODES, native_imgz
from models.training import FitSettings

__all__ = [
    "EXECUTION_ONLY_KEYS",
    "LSTM_ONLY_SECTIONS",
    "ConfigError",
    "InputConfig",
    "JobConfig",
    "ModelConfig",
    "OutputConfig",
    "PoseConfig",
    "SamplingConfig",
    "SplitConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "read_yaml",
]

#: What cameras, phones, broadcast and the web write (compared without case: ``.MTS`` is ``.mts``).
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".gif", ".flv", ".wmv",
    ".3gp", ".3g2", ".mts", ".m2ts", ".mxf", ".vob", ".ogv", ".asf", ".f4v", ".dv",
)


class ConfigError(ValueError):
    """A bad key, value, path or handle; the message is one line for the user."""


_T = TypeVar("_T")

#: An int or a float, kept as given (``14400`` stays an int): ``job_hash`` hashes the values as
#: loaded, so coercing to float would change the hash of configs written before these models.
#: Strict: a bool or a string is not a number.
Number = Annotated[int | float, GetPydanticSchema(lambda _source, _handler: core_schema.union_schema(
    [core_schema.int_schema(strict=True), core_schema.float_schema(strict=True)],
    custom_error_type="float_type"))]
PositiveNumber = Annotated[Number, Field(gt=0)]


def _listed(value: Any) -> Any:
    """A single string stands for a list of one."""
    return [value] if isinstance(value, str) else value


#: A tuple of ``_T`` from a YAML list, or from one string.
OneOrMany = Annotated[tuple[_T, ...], Field(strict=False), BeforeValidator(_listed)]


class _Section(BaseModel):
    """A config section: frozen, unknown keys refused, values taken as YAML types them (no coercion)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class InputConfig(_Section):
    """Where the videos are.

    Attributes:
        paths: globs (local or gs://) or manifest files (.csv, .jsonl, .parquet
            with columns ``uri`` and optionally ``label``, ``split``, ``video_id``).
        extensions: file endings a glob match must have to count as a video (compared without
            case); the other matches are counted in the run summary and ``_run.json``
            (``skipped``). A file named by itself is a video whatever its ending.
        background_label: the label of frames outside every segment of a video
            a segment manifest (``uri,start_s,end_s,label``) describes; null leaves them unlabelled.
    """

    paths: OneOrMany[str] = ()
    extensions: OneOrMany[Annotated[str, Field(pattern=r"^\.")]] = VIDEO_EXTENSIONS
    background_label: str | None = None


class SplitConfig(_Section):
    """How a labelled video gets its split when the manifest does not give one.

    A stable hash of ``salt`` and ``video_id`` picks the split, so a video lands
    in the same split on every run. A video with no label and no split given is
    ``unlabelled``: it can be neither trained nor tested on (``transforms.splits``).

    Attributes:
        ratios: share of each split, non-negative, summing to 1.
        salt: hashed with the video id.
    """

    ratios: Annotated[dict[str, Annotated[Number, Field(ge=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: {"train": 0.8, "valid": 0.1, "test": 0.1})
    salt: str = "videolabel"

    @field_validator("ratios")
    @classmethod
    def _sum_to_one(cls, ratios: dict[str, int | float]) -> dict[str, int | float]:
        total = sum(ratios.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"split.ratios: {ratios} sum to {total:g}, not 1")
        return ratios


class SamplingConfig(_Section):
    """Which frames to take and at what size.

    Attributes:
        strategy: ``fps`` (frames nearest to every 1/fps seconds), ``uniform``
            (``n_frames`` evenly spaced over the video) or ``all``.
        fps: target rate for ``fps``.
        n_frames: frames per base-mode clip, and the count for ``uniform``.
        clip_stride: frames between base-mode clip starts, at most ``n_frames``;
            None means ``n_frames`` (no overlap).
        imgz: side of the square model input; None means the model's native size.
        max_duration_s, max_pixels: guards; a video over them fails at probe.
        decode_timeout_s: a video decoding longer than this stops, keeping what
            was decoded (status ``partial``).
        predecode_max_frames: with ``model.accelerator``, a video of at most this
            many sampled frames is decoded on the CPU workers and its frames sent to
            the GPU step; a longer one is decoded there, lazily (bounded memory).
        decode_threads: FFmpeg threads per video being decoded; 1 suits one
            worker process per core, the runner spreading videos over the cores
            (0: FFmpeg decides, slice threads, one more than the cores).
        decoder_memory_mb: address-space cap of the decoder process each worker
            runs its decoding in (``transforms.decoder_process``); a video that needs
            more fails as ``DecoderOutOfMemory`` and the worker goes on.
    """

    strategy: Literal["fps", "uniform", "all"] = "fps"
    fps: PositiveNumber = 5.0
    n_frames: PositiveInt = 8
    clip_stride: PositiveInt | None = None
    imgz: PositiveInt | None = None
    max_duration_s: PositiveNumber = 4 * 3600.0
    max_pixels: PositiveInt = 3840 * 2160
    decode_timeout_s: PositiveNumber = 600.0
    predecode_max_frames: PositiveInt = 3000
    decode_threads: NonNegativeInt = 1
    decoder_memory_mb: PositiveInt = 4096

    @property
    def stride(self) -> int:
        """Frames between clip starts: ``clip_stride``, else ``n_frames``."""
        return self.clip_stride or self.n_frames

    @model_validator(mode="after")
    def _clips_cover_every_frame(self) -> SamplingConfig:
        if self.clip_stride is not None and self.clip_stride > self.n_frames:
            raise ConfigError(
                f"sampling.clip_stride: {self.clip_stride} is larger than n_frames "
                f"({self.n_frames}); frames between clips would get no prediction")
        return self


class ModelConfig(_Section):
    """The classifier.

    Attributes:
        kind: ``movinet``, or ``lstm`` (pose keypoints into an LSTM trained by
            ``videolabel train``; ``handle`` is its output folder).
        model_id: a0-a5.
        model_mode: ``base`` (clips, 3D convs) or ``stream`` (causal, frame by
            frame with carried state).
        hub_version: TF Hub version used to build the default handle.
        handle: TF Hub URL, local or gs:// SavedModel dir; None builds the TF Hub
            Kinetics-600 URL from model_id, model_mode and hub_version.
        labels: labels file (one name per line, index order); None uses the
            model dir's labels.txt, else the Kinetics-600 names.
        top_k: how many classes each row lists.
        batch_size: clips per model call in base mode; in stream mode with an accelerator
            (TensorFlow), videos per model call (one on CPU workers).
        stream_chunk: frames per model call in stream mode (state carried across).
        video_pool: base mode: how clip probabilities make the video's, ``mean`` or ``max``
            (max then renormalised to sum to 1).
        tf_threads: threads of the model's runtime per worker process: TensorFlow's intra-op
            threads, or LiteRT's (XNNPACK) threads for a model served on LiteRT; 0 lets it decide.
        pin_workers: local ``multi_processing`` runs and Flink's SDK workers, with one TF and
            one FFmpeg thread per worker: pin each worker process to a core of its own.
        accelerator: a Beam accelerator resource hint for the Classify step alone, e.g.
            ``type:nvidia-l4;count:1;install-nvidia-driver`` (Dataflow "right fitting"):
            listing and decoding stay on the CPU workers, before a fusion break.
        runtime: what runs a stream model: ``litert`` (converted once at launch, cached by
            the model's content; the workers never import TensorFlow), ``tf`` (the
            SavedModel in TensorFlow), or ``auto``: LiteRT for stream models on CPU
            workers whose SavedModel gives per-frame outputs (``export-movinet``,
            ``train``) and for .tflite files, TensorFlow otherwise (base mode, an
            accelerator, TF Hub models). The outputs agree to 1e-4 either way. ``train``
            converts the stream model it saves into the cache unless this is ``tf``.
        max_batch_duration_s: stream mode with an accelerator (TensorFlow): Beam's
            ``max_batch_duration_secs``: the ``batch_size`` videos of a call are gathered
            across bundles, those of similar length together (power-of-two buckets of
            sampled frames), a partial batch waiting at most this long; null: batches form
            within a bundle, whatever the lengths. A gathering batch holds its videos'
            decoded frames (up to ``sampling.predecode_max_frames`` each; docs/SCALING.md).
        frame_window_s: stream mode: a frame's label comes from the mean of the backbone's
            features over the last ``frame_window_s`` seconds of sampled frames, so it says what
            happens now; 0 keeps the cumulative output (the label of the video from its start to
            that frame). The video's prediction is the output after its last frame either way.
            TF Hub stream models have no per-frame features: their frames get per-chunk outputs.
    """

    kind: Literal["movinet", "lstm"] = "movinet"
    model_id: Literal[MODEL_IDS] = "a0"
    model_mode: Literal[MODEL_MODES] = "stream"
    hub_version: PositiveInt = 3
    handle: str | None = None
    labels: str | None = None
    top_k: PositiveInt = 5
    batch_size: PositiveInt = 4
    stream_chunk: PositiveInt = 64
    video_pool: Literal["mean", "max"] = "mean"
    tf_threads: NonNegativeInt = 1
    pin_workers: bool = True
    accelerator: str | None = None
    runtime: Literal["auto", "tf", "litert"] = "auto"
    max_batch_duration_s: PositiveNumber | None = None
    frame_window_s: Annotated[Number, Field(ge=0)] = 2.0

    @field_validator("accelerator")
    @classmethod
    def _is_resource_hint(cls, hint: str | None) -> str | None:
        if hint is not None and not ("type:" in hint and "count:" in hint):
            raise ConfigError(f"model.accelerator: {hint!r} is not a Beam accelerator hint "
                              "(e.g. type:nvidia-l4;count:1;install-nvidia-driver)")
        return hint


class PoseConfig(_Section):
    """The keypoint model for ``model.kind: lstm`` and ``videolabel train``.

    Attributes:
        handle: MoveNet single-pose model: a .tflite file, or a SavedModel / TF Hub handle.
        threshold: joints scored under this (in [0, 1]) become zeros.
    """

    handle: str | None = None
    threshold: Annotated[Number, Field(ge=0, le=1)] = 0.2


class TrainConfig(FitSettings):
    """``videolabel train``: the fit settings of ``models.training`` plus, for MoViNet, what to train.

    Attributes:
        method: MoViNet only: ``head`` (a new classifier head on the frozen
            backbone's pooled features; needs ``checkpoint``) or ``finetune``
            (every weight, on the decoded clips).
        checkpoint: MoViNet only: pretrained weights to start from, a
            tf.train.Checkpoint prefix (the MoViNet release's ``ckpt-1``) or a
            SavedModel written by ``export-movinet`` / ``train``; null starts
            ``finetune`` from random weights.
        dropout_rate: MoViNet only: dropout inside the classifier head while training, in [0, 1).
        augment: MoViNet ``finetune`` only: ``colour`` gives each train clip, each time it is
            drawn, its colour channels in a random order and a random brightness, the same for
            all its frames (``models.clip_augment``), so that a small set is learnt by its
            motion, not memorised by its looks; ``none`` trains on the clips as decoded.
        min_steps: at least this many optimiser steps (see ``FitSettings``); null: 1000 for a
            MoViNet ``finetune`` (from random weights a small set learns its motions only after
            300-400 steps, dozens of passes), 0 otherwise.
    """

    method: Literal["head", "finetune"] = "head"
    checkpoint: str | None = None
    dropout_rate: Annotated[Number, Field(ge=0, lt=1)] = 0.2
    augment: Literal["colour", "none"] = "colour"
    min_steps: NonNegativeInt | None = None


class OutputConfig(_Section):
    """Where and what to write.

    Attributes:
        path: output directory, local or gs://.
        write_frames: write ``frames/`` rows.
        write_probs: add the full probability vector to each frame row.
        write_keypoints: add the pose keypoints to each frame row (``model.kind: lstm``).
        videos_per_file: videos per Parquet part file, at most; parts are committed
            as they fill, so a killed run keeps what was done (``--resume``).
        flush_s: a part is also committed once its oldest video has waited this long.
        write_segments: write ``segments/`` rows: the stretches of each video where one
            predicted label holds (``transforms.segments``).
        segment_min_s: the shortest segment kept; another label must hold for longer than
            this to close a segment, so one odd frame neither splits a segment nor opens one.
        segment_min_score: a segment opens only on a frame whose score is at least this.
        write_embeddings: add ``embedding`` to ``videos`` and ``segments``: an L2-normalised
            fixed-size float32 vector per video and per segment, the mean of its frames' features
            (MoViNet: the head's projection, 480 floats for A0; the pose LSTM: its last layer,
            128), for near-duplicates and "more like this" (``transforms.embeddings``).
    """

    path: Annotated[str, Field(min_length=1)] = "output"
    write_frames: bool = True
    write_probs: bool = False
    write_keypoints: bool = False
    videos_per_file: PositiveInt = 1000
    flush_s: PositiveNumber = 60.0
    write_segments: bool = True
    segment_min_s: Annotated[Number, Field(ge=0)] = 1.0
    segment_min_score: Annotated[Number, Field(ge=0, le=1)] = 0.5
    write_embeddings: bool = False


#: The config keys that cannot change an output row, the one place ``JobConfig.job_hash``
#: reads: every other key is hashed (a key added later is hashed until it is listed here).
#: ``section.key`` names one key, ``section`` a whole section. Why each is here:
EXECUTION_ONLY_KEYS: frozenset[str] = frozenset({
    "input.paths",                   # which videos: resume keeps and redoes rows video by video
    "input.extensions",              # which files a glob lists, as paths: not what a listed video's rows hold
    "sampling.decode_timeout_s",     # a wall-clock budget: a video decoded in time has the same rows
                                     # whatever it is (one cut short is ``partial`` and redone anyway)
    "sampling.predecode_max_frames",  # whether frames are decoded on the CPU or the GPU workers
    "sampling.decode_threads",       # FFmpeg decodes the same pixels with any thread count
    "sampling.decoder_memory_mb",    # a memory budget: as decode_timeout_s (over it, a failed row)
    "model.batch_size",              # clips per model call: the same clips, the same outputs
    "model.tf_threads",              # threads per worker process
    "model.pin_workers",             # which core a worker process runs on
    "model.accelerator",             # which workers run the model step
    "model.runtime",                 # TensorFlow or LiteRT: the same outputs to 1e-4, chunk for chunk
    "model.max_batch_duration_s",    # how videos are gathered into GPU batches: a video's outputs
                                     # do not depend on the others in its call (to 1e-4)
    "output.path",                   # where: resume reads the rows already there
    "output.videos_per_file",        # how rows are grouped into part files
    "output.flush_s",                # when a part file is committed
    "train",                         # `videolabel train` only; `run` never reads it
    "runner",                        # Beam / Dataflow options
})

#: Sections hashed only when ``model.kind`` is ``lstm``, the only model that uses them.
LSTM_ONLY_SECTIONS: frozenset[str] = frozenset({"pose"})


class JobConfig(_Section):
    """The whole job. ``runner`` maps Beam option names to values."""

    input: InputConfig = InputConfig()
    split: SplitConfig = SplitConfig()
    sampling: SamplingConfig = SamplingConfig()
    model: ModelConfig = ModelConfig()
    pose: PoseConfig = PoseConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    runner: dict[str, Any] = Field(default_factory=dict)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        """A section left empty in YAML (``sampling:``) takes its defaults."""
        return {} if value is None else value

    @model_validator(mode="after")
    def _model_needs(self) -> JobConfig:
        if self.output.write_keypoints and self.model.kind != "lstm":
            raise ConfigError("output.write_keypoints: keypoints come from the pose model of "
                              f"model.kind lstm, not {self.model.kind!r}")
        if self.model.kind == "lstm" and not self.pose.handle:
            raise ConfigError("pose.handle: model.kind lstm needs a MoveNet keypoint model "
                              "(a .tflite file or a SavedModel)")
        return self

    @property
    def imgz(self) -> int:
        """Model input side in pixels: the configured one, else the variant's native size."""
        return self.sampling.imgz or native_imgz(self.model.model_id)

    def with_inputs(self, paths: Sequence[str]) -> JobConfig:
        """The same job over other inputs."""
        return self.model_copy(update={"input": self.input.model_copy(update={"paths": tuple(paths)})})

    def to_dict(self) -> dict[str, Any]:
        """Every section and key, as plain Python values (tuples, dicts, numbers, strings)."""
        return self.model_dump()

    def job_hash(self) -> str:
        """Hash of exactly the settings that can change an output row (the ``config_hash`` column).

        ``--resume`` keeps a video's rows when they carry this hash (and the same
        model handle), so the hash leaves out every key of ``EXECUTION_ONLY_KEYS``:
        the input paths and listing, threads, worker pinning, the accelerator, the
        batch size, where decoding runs, the decode time and memory budgets (a video
        over them is a failed or partial row, which resume redoes anyway), the output
        location and part-file sizing, the ``train`` section and the runner options.
        It covers everything else: the model and its labels (kind, model_id,
        model_mode, hub_version, handle, labels, top_k, video_pool, and stream_chunk,
        because TF Hub stream models give each frame the output after its chunk's
        last frame), the frames and pixels sampled (strategy, fps, n_frames,
        clip_stride, imgz, and the max_duration_s / max_pixels guards, which make a
        video a failed row whatever the machine), input.background_label, the split
        ratios and salt, the written columns (write_frames, write_probs,
        write_keypoints, write_embeddings), and the ``pose`` section when ``model.kind`` is lstm.

        Returns:
            16 hex digits.
        """
        job: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            unused = section in LSTM_ONLY_SECTIONS and self.model.kind != "lstm"
            if section in EXECUTION_ONLY_KEYS or unused:
                continue
            job[section] = {key: value for key, value in values.items()
                            if f"{section}.{key}" not in EXECUTION_ONLY_KEYS}
        blob = json.dumps(job, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _key(loc: tuple[int | str, ...]) -> str:
    """``("split", "ratios", "train")`` -> ``split.ratios.train``; list items as ``[i]``."""
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}"
    return key.lstrip(".") or "config"


def _error_line(error: ErrorDetails) -> str:
    """One pydantic error as the one line a user reads: the key, the bad value and why."""
    raised = error.get("ctx", {}).get("error")
    if isinstance(raised, ConfigError):  # a cross-field check: its message names the key already
        return str(raised)
    loc = error["loc"]
    model: type[BaseModel] = JobConfig
    for part in loc[:-1]:
        model = model.model_fields[part].annotation
    if error["type"] == "extra_forbidden":
        what = "section" if model is JobConfig else "key"
        return f"{_key(loc)}: unknown {what} (known: {', '.join(model.model_fields)})"
    if error["type"] == "literal_error":
        choices = typing.get_args(model.model_fields[loc[-1]].annotation)
        return f"{_key(loc)}: {error['input']!r} is not one of {', '.join(map(str, choices))}"
    msg = error["msg"]
    return f"{_key(loc)}: {error['input']!r} is invalid ({msg[:1].lower()}{msg[1:]})"


def config_from_dict(raw: Mapping[str, Any]) -> JobConfig:
    """Builds and validates a JobConfig from a parsed YAML mapping.

    Raises:
        ConfigError: naming the first bad key and its value.
    """
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_error_line(exc.errors(include_url=False)[0])) from None


def _parse_override(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> ``(section, key, value)``, the value parsed as YAML."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) != 2 or not all(parts):
        raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. sampling.fps=2")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.problem})") from None
    return parts[0], parts[1], value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str] = (),
                    values: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Sets keys of a raw config: ``section.key=value`` overrides, then ``values``.

    Args:
        raw: a parsed YAML config; not changed.
        overrides: ``section.key=value`` strings (``--set``), each value parsed as YAML.
        values: ``{section: {key: value}}``, set as given after ``overrides`` (what the
            ``--input``, ``--output`` and ``--model`` flags carry: paths, never parsed).

    Returns:
        A new mapping.
    """
    settings = [_parse_override(item) for item in overrides]
    settings += [(section, key, value) for section, keys in (values or {}).items()
                 for key, value in keys.items()]
    merged = dict(raw)
    for section, key, value in settings:
        target = merged.get(section) or {}
        if not isinstance(target, Mapping):
            raise ConfigError(f"{section}.{key}: {section} is not a section (it is {target!r})")
        merged[section] = {**target, key: value}
    return merged


def read_yaml(path: str) -> dict[str, Any]:
    """Reads a YAML config file into a mapping."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"--config: {path!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path!r} is not valid YAML ({exc})".replace("\n", " ")) from None
    return raw or {}


def load_config(path: str | None, overrides: Sequence[str] = (),
                values: Mapping[str, Mapping[str, Any]] | None = None) -> JobConfig:
    """Loads a YAML file (or the defaults when ``path`` is None) with ``apply_overrides`` applied."""
    raw = read_yaml(path) if path else {}
    return config_from_dict(apply_overrides(raw, overrides, values))
