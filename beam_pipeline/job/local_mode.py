"""How a local run uses the machine: a few videos in this process, an archive on every core.

``runner.direct_running_mode: auto`` (the local configs' setting) is decided here, at
start, from the work: the inputs are listed up to a bound and their bytes summed.

- Little work (at most ``IN_PROCESS_MAX_BYTES`` of video in at most
  ``IN_PROCESS_MAX_VIDEOS`` files, or a single video): ``in_memory``, in this process.
  A base-mode MoViNet (3D convolutions, 37x the stream model's seconds per clip on CPU)
  makes any second video more work than the workers' start-up: one video, in process.
- More: ``multi_processing`` with ``direct_num_workers`` worker processes (``0``: one per
  usable core).

Why bytes: ``multi_processing`` costs about 0.6 s more to start and stop than
``in_memory`` (worker processes forked warm, ``job.warm_workers``, each loading the
model; 2 s when each imported Beam itself), then runs about 1.7x faster on two
cores. On the 2-core machine of docs/PERFORMANCE.md 16 short 640x480 clips (2.8 MB)
took 2.8 s in process against 3.5 s on workers, while 24 10-s 360p clips (5.3 MB)
took 4.2 s against 3.8 s and two 139-s 768x432 videos (6.6 MB) 5.5 s against 5.0 s:
decoding work follows the bytes far more closely than the number of files, and the
two modes break even at 3-5 MB.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from beam_pipeline.config import JobConfig
from beam_pipeline.job.flags import runs_here
from transforms.listing import is_glob, is_manifest, manifest_rows, manifest_uri

__all__ = ["AUTO", "IN_PROCESS_MAX_BYTES", "IN_PROCESS_MAX_VIDEOS", "LocalMode", "LocalWork",
           "choose", "is_local", "job_work", "measure_work", "resolve", "usable_cores"]

#: ``direct_running_mode`` value that lets the work decide
AUTO = "auto"
IN_PROCESS_MAX_BYTES = 4 * 2**20
IN_PROCESS_MAX_VIDEOS = 64


@dataclasses.dataclass(frozen=True)
class LocalWork:
    """The inputs as far as they were listed.

    Attributes:
        videos: videos found, counted up to ``IN_PROCESS_MAX_VIDEOS + 1``.
        bytes: their size in bytes (a file that cannot be listed counts 0).
        more: listing stopped at a bound before the end: there are more videos than counted.
        max_bytes: the most bytes of video one process labels faster than worker processes.
    """

    videos: int
    bytes: int
    more: bool
    max_bytes: int = IN_PROCESS_MAX_BYTES

    @property
    def small(self) -> bool:
        """Whether this work runs faster in one process than on worker processes."""
        return self.videos <= 1 or (not self.more and self.videos <= IN_PROCESS_MAX_VIDEOS
                                    and self.bytes <= self.max_bytes)

    def __str__(self) -> str:
        if self.bytes > self.max_bytes:
            return f"{self.videos}{'+' if self.more else ''} videos, over {self.max_bytes / 2**20:g} MB"
        if self.more or self.videos > IN_PROCESS_MAX_VIDEOS:
            return f"over {IN_PROCESS_MAX_VIDEOS} files"
        return f"{self.videos} video{'' if self.videos == 1 else 's'}, {self.bytes / 2**20:.1f} MB"


@dataclasses.dataclass(frozen=True)
class LocalMode:
    """The running mode a local run gets (Beam's ``direct_running_mode``, ``direct_num_workers``)
    and why, in words for the log and ``_run.json``."""

    mode: str
    workers: int
    reason: str

    def __str__(self) -> str:
        where = "in this process" if self.mode == "in_memory" else f"{self.workers} {self.mode} workers"
        return f"{where} ({self.reason})"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    return len(os.sched_getaffinity(0))


def _manifest_uris(path: str, limit: int) -> tuple[list[str], bool]:
    """Up to ``limit`` uris of a manifest (rows that cannot be listed are left out), and whether it
    has more rows."""
    uris: list[str] = []
    for row in manifest_rows(path):
        if len(uris) == limit:
            return uris, True
        try:
            uris.append(manifest_uri(row, path))
        except ValueError:
            continue
    return uris, False


def _sizes(patterns: Sequence[str], limit: int) -> list[int]:
    """Sizes of up to ``limit`` files matched by each pattern (an unlistable pattern: none)."""
    sizes = []
    for pattern in patterns:
        try:
            found = FileSystems.match([pattern], limits=[limit])[0].metadata_list
        except Exception:  # BeamIOError: a missing file is the job's to report, as a failed row
            continue
        sizes.extend(m.size_in_bytes for m in found)
    return sizes


def measure_work(paths: Sequence[str], extensions: Sequence[str],
                 max_bytes: int = IN_PROCESS_MAX_BYTES) -> LocalWork:
    """Lists ``paths`` (files, globs, manifests; local or gs://) until the work is known to be more
    than one process does faster (over ``max_bytes``): at most ``IN_PROCESS_MAX_VIDEOS + 1`` files
    per glob and rows per manifest are listed."""
    limit = IN_PROCESS_MAX_VIDEOS + 1
    endings = tuple(e.lower() for e in extensions)
    sizes: list[int] = []
    more = False
    for index, path in enumerate(paths):
        if is_manifest(path):
            uris, cut = _manifest_uris(path, limit)
            more = more or cut
            found = _sizes(uris, 1)
            sizes.extend(found + [0] * (len(uris) - len(found)))
        elif is_glob(path):
            matched = FileSystems.match([path], limits=[limit])[0].metadata_list
            more = more or len(matched) == limit
            sizes.extend(m.size_in_bytes for m in matched if m.path.lower().endswith(endings))
        else:
            sizes.extend(_sizes([path], 1) or [0])
        if more or len(sizes) > IN_PROCESS_MAX_VIDEOS or sum(sizes) > max_bytes:
            more = more or index < len(paths) - 1
            break
    return LocalWork(videos=len(sizes), bytes=sum(sizes), more=more, max_bytes=max_bytes)


def job_work(cfg: JobConfig, paths: Sequence[str] | None = None) -> LocalWork:
    """``measure_work`` of ``paths`` (default: the job's inputs) for the job's model: a base-mode
    MoViNet does one video in process, no more."""
    heavy = cfg.model.kind == "movinet" and cfg.model.model_mode == "base"
    return measure_work(cfg.input.paths if paths is None else paths, cfg.input.extensions,
                        0 if heavy else IN_PROCESS_MAX_BYTES)


def choose(work: LocalWork, workers: int) -> LocalMode:
    """The mode for ``work``: ``in_memory`` when it is small (``LocalWork.small``) or one core is
    usable, else ``multi_processing`` on ``workers`` processes (0: ``usable_cores()``)."""
    cores = usable_cores()
    workers = workers or cores
    if work.small or workers == 1:
        return LocalMode("in_memory", 1, f"auto: {work}" if work.small else "auto: one worker")
    return LocalMode("multi_processing", workers, f"auto: {work}, {cores} usable cores")


def is_local(options: PipelineOptions) -> bool:
    """Whether the runner runs the workers on this machine."""
    return runs_here(options.view_as(StandardOptions).runner)


def resolve(options: PipelineOptions, work: Callable[[], LocalWork]) -> LocalMode | None:
    """Decides ``direct_running_mode: auto`` of ``options`` in place (``choose``, from ``work()``,
    called only then).

    Returns:
        The mode a local run runs in (chosen, or as set); None for a remote runner.
    """
    direct = options.view_as(DirectOptions)
    if not is_local(options):
        if direct.direct_running_mode == AUTO:
            direct.direct_running_mode = "in_memory"  # Beam's default; not used off this machine
        return None
    if direct.direct_running_mode != AUTO:
        set_mode = direct.direct_running_mode
        workers = 1 if set_mode == "in_memory" else direct.direct_num_workers or usable_cores()
        return LocalMode(set_mode, workers, "set")
    mode = choose(work(), direct.direct_num_workers)
    direct.direct_running_mode, direct.direct_num_workers = mode.mode, mode.workers
    return mode
