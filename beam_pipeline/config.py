"""Job configuration: YAML loaded into frozen, validated dataclasses.

Job semantics (what to read, how to sample, which model, where to write) live
here; runner settings stay a plain mapping that becomes Beam PipelineOptions
(see ``beam_pipeline.options``). Every problem raises ``ConfigError`` with one
line naming the bad key and value, before any video is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

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
    "load_config",
]

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".gif", ".flv", ".wmv",
)
MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".parquet")
SAMPLING_STRATEGIES = ("fps", "uniform", "all")
MODEL_KINDS = ("movinet", "lstm")
VIDEO_POOLS = ("mean", "max")
TRAIN_METHODS = ("head", "finetune")


class ConfigError(ValueError):
    """A bad key, value, path or handle; the message is one line for the user."""


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Where the videos are.

    Attributes:
        paths: globs (local or gs://) or manifest files (.csv, .jsonl, .parquet
            with columns ``uri`` and optionally ``label``, ``split``, ``video_id``).
        extensions: file endings a glob match must have to count as a video.
        background_label: the label of frames outside every segment of a video
            a segment manifest (``uri,start_s,end_s,label``) describes; null leaves them unlabelled.
    """

    paths: tuple[str, ...] = ()
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    background_label: str | None = None

    def validate(self) -> None:
        for ext in self.extensions:
            if not ext.startswith("."):
                raise ConfigError(f"input.extensions: {ext!r} must start with '.'")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How each video gets its split when the manifest does not give one.

    A stable hash of ``salt`` and ``video_id`` picks the split, so a video lands
    in the same split on every run.
    """

    ratios: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"train": 0.8, "valid": 0.1, "test": 0.1})
    salt: str = "videolabel"

    def validate(self) -> None:
        if not self.ratios:
            raise ConfigError("split.ratios: must name at least one split")
        for name, ratio in self.ratios.items():
            if not isinstance(ratio, (int, float)) or ratio < 0:
                raise ConfigError(f"split.ratios.{name}: {ratio!r} is not a non-negative number")
        total = sum(self.ratios.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"split.ratios: {dict(self.ratios)} sum to {total:g}, not 1")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Which frames to take and at what size.

    Attributes:
        strategy: ``fps`` (frames nearest to every 1/fps seconds), ``uniform``
            (``n_frames`` evenly spaced over the video) or ``all``.
        fps: target rate for ``fps``.
        n_frames: frames per base-mode clip, and the count for ``uniform``.
        clip_stride: frames between base-mode clip starts; None means
            ``n_frames`` (no overlap).
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

    strategy: str = "fps"
    fps: float = 5.0
    n_frames: int = 8
    clip_stride: int | None = None
    imgz: int | None = None
    max_duration_s: float = 4 * 3600.0
    max_pixels: int = 3840 * 2160
    decode_timeout_s: float = 600.0
    predecode_max_frames: int = 3000
    decode_threads: int = 1
    decoder_memory_mb: int = 4096

    @property
    def stride(self) -> int:
        return self.clip_stride or self.n_frames

    def validate(self) -> None:
        if self.strategy not in SAMPLING_STRATEGIES:
            raise ConfigError(
                f"sampling.strategy: {self.strategy!r} is not one of {', '.join(SAMPLING_STRATEGIES)}")
        _positive("sampling.fps", self.fps)
        _positive("sampling.n_frames", self.n_frames, integer=True)
        if self.clip_stride is not None:
            _positive("sampling.clip_stride", self.clip_stride, integer=True)
            if self.clip_stride > self.n_frames:
                raise ConfigError(
                    f"sampling.clip_stride: {self.clip_stride} is larger than n_frames "
                    f"({self.n_frames}); frames between clips would get no prediction")
        if self.imgz is not None:
            _positive("sampling.imgz", self.imgz, integer=True)
        _positive("sampling.max_duration_s", self.max_duration_s)
        _positive("sampling.max_pixels", self.max_pixels, integer=True)
        _positive("sampling.decode_timeout_s", self.decode_timeout_s)
        _positive("sampling.predecode_max_frames", self.predecode_max_frames, integer=True)
        _positive("sampling.decoder_memory_mb", self.decoder_memory_mb, integer=True)
        if not isinstance(self.decode_threads, int) or self.decode_threads < 0:
            raise ConfigError(f"sampling.decode_threads: {self.decode_threads!r} is not an integer >= 0")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
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
        batch_size: clips per model call in base mode.
        stream_chunk: frames per model call in stream mode (state carried across).
        video_pool: base mode: how clip probabilities make the video's, ``mean`` or ``max``
            (max then renormalised to sum to 1).
        tf_threads: TensorFlow intra-op threads per worker process; 0 lets TF decide.
        pin_workers: local ``multi_processing`` runs with one TF and one FFmpeg thread
            per worker: pin each worker process to a core of its own.
        accelerator: a Beam accelerator resource hint for the Classify step alone, e.g.
            ``type:nvidia-l4;count:1;install-nvidia-driver`` (Dataflow "right fitting"):
            listing and decoding stay on the CPU workers, before a fusion break.
    """

    kind: str = "movinet"
    model_id: str = "a0"
    model_mode: str = "stream"
    hub_version: int = 3
    handle: str | None = None
    labels: str | None = None
    top_k: int = 5
    batch_size: int = 4
    stream_chunk: int = 64
    video_pool: str = "mean"
    tf_threads: int = 1
    pin_workers: bool = True
    accelerator: str | None = None

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"model.kind: {self.kind!r} is not one of {', '.join(MODEL_KINDS)}")
        if self.model_id not in MODEL_IDS:
            raise ConfigError(f"model.model_id: {self.model_id!r} is not one of {', '.join(MODEL_IDS)}")
        if self.model_mode not in MODEL_MODES:
            raise ConfigError(
                f"model.model_mode: {self.model_mode!r} is not one of {', '.join(MODEL_MODES)}")
        _positive("model.hub_version", self.hub_version, integer=True)
        _positive("model.top_k", self.top_k, integer=True)
        _positive("model.batch_size", self.batch_size, integer=True)
        _positive("model.stream_chunk", self.stream_chunk, integer=True)
        if self.video_pool not in VIDEO_POOLS:
            raise ConfigError(f"model.video_pool: {self.video_pool!r} is not one of {', '.join(VIDEO_POOLS)}")
        if not isinstance(self.tf_threads, int) or self.tf_threads < 0:
            raise ConfigError(f"model.tf_threads: {self.tf_threads!r} is not an integer >= 0")
        if not isinstance(self.pin_workers, bool):
            raise ConfigError(f"model.pin_workers: {self.pin_workers!r} is not true or false")
        hint = str(self.accelerator)
        if self.accelerator is not None and not ("type:" in hint and "count:" in hint):
            raise ConfigError(f"model.accelerator: {self.accelerator!r} is not a Beam accelerator hint "
                              "(e.g. type:nvidia-l4;count:1;install-nvidia-driver)")


@dataclasses.dataclass(frozen=True)
class PoseConfig:
    """The keypoint model for ``model.kind: lstm`` and ``videolabel train``.

    Attributes:
        handle: MoveNet single-pose model: a .tflite file, or a SavedModel / TF Hub handle.
        threshold: joints scored under this become zeros.
    """

    handle: str | None = None
    threshold: float = 0.2

    def validate(self) -> None:
        if not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise ConfigError(f"pose.threshold: {self.threshold!r} is not a number in [0, 1]")


@dataclasses.dataclass(frozen=True)
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
        dropout_rate: MoViNet only: dropout inside the classifier head while training.
    """

    method: str = "head"
    checkpoint: str | None = None
    dropout_rate: float = 0.2

    def validate(self) -> None:
        _positive("train.num_epochs", self.num_epochs, integer=True)
        _positive("train.learning_rate", self.learning_rate)
        _positive("train.batch_size", self.batch_size, integer=True)
        _positive("train.patience", self.patience, integer=True)
        if self.method not in TRAIN_METHODS:
            raise ConfigError(f"train.method: {self.method!r} is not one of {', '.join(TRAIN_METHODS)}")
        if not isinstance(self.dropout_rate, (int, float)) or not 0 <= self.dropout_rate < 1:
            raise ConfigError(f"train.dropout_rate: {self.dropout_rate!r} is not a number in [0, 1)")


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """Where and what to write.

    Attributes:
        path: output directory, local or gs://.
        write_frames: write ``frames/`` rows.
        write_probs: add the full probability vector to each frame row.
        write_keypoints: add the pose keypoints to each frame row (``model.kind: lstm``).
        videos_per_file: videos per Parquet part file, at most; parts are committed
            as they fill, so a killed run keeps what was done (``--resume``).
        flush_s: a part is also committed once its oldest video has waited this long.
    """

    path: str = "output"
    write_frames: bool = True
    write_probs: bool = False
    write_keypoints: bool = False
    videos_per_file: int = 1000
    flush_s: float = 60.0

    def validate(self) -> None:
        if not self.path:
            raise ConfigError("output.path: must not be empty")
        _positive("output.videos_per_file", self.videos_per_file, integer=True)
        _positive("output.flush_s", self.flush_s)


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
    "output.path",                   # where: resume reads the rows already there
    "output.videos_per_file",        # how rows are grouped into part files
    "output.flush_s",                # when a part file is committed
    "train",                         # `videolabel train` only; `run` never reads it
    "runner",                        # Beam / Dataflow options
})

#: Sections hashed only when ``model.kind`` is ``lstm``, the only model that uses them.
LSTM_ONLY_SECTIONS: frozenset[str] = frozenset({"pose"})


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """The whole job. ``runner`` maps Beam option names to values."""

    input: InputConfig = InputConfig()
    split: SplitConfig = SplitConfig()
    sampling: SamplingConfig = SamplingConfig()
    model: ModelConfig = ModelConfig()
    pose: PoseConfig = PoseConfig()
    train: TrainConfig = TrainConfig()
    output: OutputConfig = OutputConfig()
    runner: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def imgz(self) -> int:
        """Model input side in pixels: the configured one, else the variant's native size."""
        return self.sampling.imgz or native_imgz(self.model.model_id)

    def validate(self) -> None:
        for section in (self.input, self.split, self.sampling, self.model, self.pose, self.train,
                        self.output):
            section.validate()
        if self.output.write_keypoints and self.model.kind != "lstm":
            raise ConfigError("output.write_keypoints: keypoints come from the pose model of "
                              f"model.kind lstm, not {self.model.kind!r}")
        if self.model.kind == "lstm" and not self.pose.handle:
            raise ConfigError("pose.handle: model.kind lstm needs a MoveNet keypoint model "
                              "(a .tflite file or a SavedModel)")

    def with_inputs(self, paths: tuple[str, ...]) -> JobConfig:
        """The same job over other inputs."""
        return dataclasses.replace(self, input=dataclasses.replace(self.input, paths=tuple(paths)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
        write_keypoints), and the ``pose`` section when ``model.kind`` is lstm.

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


_SECTIONS = {
    "input": InputConfig,
    "split": SplitConfig,
    "sampling": SamplingConfig,
    "model": ModelConfig,
    "pose": PoseConfig,
    "train": TrainConfig,
    "output": OutputConfig,
}


def _positive(key: str, value: Any, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        noun = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{key}: {value!r} is not {noun}")


def _build_section(name: str, raw: Any):
    cls = _SECTIONS[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: expected a mapping of keys, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(fields)})")
    values = dict(raw)
    for key in ("paths", "extensions"):
        if key in values:
            value = values[key]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{name}.{key}: {value!r} is not a list")
            values[key] = tuple(str(v) for v in value)
    return cls(**values)


def config_from_dict(raw: Mapping[str, Any]) -> JobConfig:
    """Builds and validates a JobConfig from a parsed YAML mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        if key not in _SECTIONS and key != "runner":
            raise ConfigError(f"{key}: unknown section (known: {', '.join([*_SECTIONS, 'runner'])})")
    runner = raw.get("runner") or {}
    if not isinstance(runner, Mapping):
        raise ConfigError(f"runner: expected a mapping of Beam options, got {runner!r}")
    sections = {name: _build_section(name, raw.get(name)) for name in _SECTIONS}
    cfg = JobConfig(**sections, runner=dict(runner))
    cfg.validate()
    return cfg


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``section.key=value`` overrides (value parsed as YAML) to a raw config.

    Returns a new mapping; ``raw`` is not changed.
    """
    merged = json.loads(json.dumps(raw, default=str)) if raw else {}
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. sampling.fps=2")
        section, name = parts
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc.problem})") from None
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {item!r}: {section} is not a section")
        target[name] = value
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


def load_config(path: str | None, overrides: Sequence[str] = ()) -> JobConfig:
    """Loads a YAML file (or the defaults when ``path`` is None) with overrides applied."""
    raw = read_yaml(path) if path else {}
    return config_from_dict(apply_overrides(raw, overrides))
