"""Stream mode batches videos on GPU workers: each video's outputs are exactly those it gets alone.

Runs on CPU: batching is only switched on with ``model.accelerator``, but what it
computes does not depend on the device, so the exactness is checked here.
"""

from __future__ import annotations

import bisect

import apache_beam as beam
import numpy as np
import psutil
import pytest
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from beam_pipeline.config import load_config
from beam_pipeline.job.pipeline import make_handler
from beam_pipeline.job.serving import ServedModel
from models.movinet import Movinet, MovinetStream, _SavedModelSteps
from tests.conftest import random_frames
from transforms.classify import Classify
from transforms.records import ClipPrediction, FrameSource, SamplingSpec, VideoInfo, VideoMeta, VideoRef
from transforms.streaming import stream_prediction, stream_predictions
from transforms.video_handler import (
    LENGTH_BUCKETS,
    ClipWindows,
    StreamBatch,
    StreamChunks,
    VideoHandler,
    expected_length,
)

SIDE = 64
CHUNK = 4
K = 5
GPU = '"type:nvidia-l4;count:1;install-nvidia-driver"'


@pytest.fixture(scope="module")
def loaded(a0_stream):
    return tf.saved_model.load(a0_stream)


@pytest.fixture(scope="module")
def per_frame(loaded):
    """The exported model: a causal output after every frame."""
    return MovinetStream(_SavedModelSteps(loaded))


@pytest.fixture(scope="module")
def last_only(loaded):
    """The same weights as TF Hub's stream models serve them: only the output after a call's last frame."""
    steps = _SavedModelSteps(loaded)
    steps.per_frame = False
    return MovinetStream(steps)


_PRELOADED: dict[str, MovinetStream] = {}


class _Preloaded:
    """A model spec whose ``load`` gives a model this process loaded already (the DirectRunner's
    workers run in the test's process), so the pipeline test does not load the model again."""

    def __init__(self, name: str):
        self.handle = name

    def load(self) -> MovinetStream:
        return _PRELOADED[self.handle]


class _Spy:
    """A stream model that records the frames shape of every step."""

    def __init__(self, model):
        self._model = model
        self.per_frame, self.batches = model.per_frame, model.batches
        self.shapes: list[tuple[int, ...]] = []

    def init_states(self, imgz, batch=None):
        return self._model.init_states(imgz, batch)

    def step(self, frames, states):
        self.shapes.append(frames.shape)
        return self._model.step(frames, states)


def _videos(lengths, seed=0):
    return [random_frames(n, SIDE, seed=seed + i) for i, n in enumerate(lengths)]


def _alone(model, videos, keep_probs=True):
    return [stream_prediction(model, frames, chunk=CHUNK, imgz=SIDE, k=K, keep_probs=keep_probs)
            for frames in videos]


#: Probabilities agree to this relative tolerance (log-probabilities to about 1e-4): random
#: weights give probabilities of 1e-5 to 1e-2, where an absolute 1e-4 would hide a wrong output.
RTOL = 1e-4


def _assert_same(got: ClipPrediction, want: ClipPrediction) -> None:
    np.testing.assert_array_equal(got.frame_indices, want.frame_indices)
    np.testing.assert_array_equal(got.timestamps_s, want.timestamps_s)
    np.testing.assert_array_equal(got.top_index, want.top_index)
    np.testing.assert_allclose(got.top_score, want.top_score, rtol=RTOL, atol=0)
    assert (got.frame_probs is None) == (want.frame_probs is None)
    if want.frame_probs is not None:
        np.testing.assert_allclose(got.frame_probs, want.frame_probs, rtol=RTOL, atol=0)
    assert (got.clip_probs is None) == (want.clip_probs is None)
    if want.clip_probs is not None:
        np.testing.assert_allclose(got.clip_probs, want.clip_probs, rtol=RTOL, atol=0)


@pytest.mark.parametrize("which", ["per_frame", "last_only"])
@pytest.mark.parametrize("lengths", [(5, 9, 13), (13, 0, 4, 8)], ids=["5-9-13", "13-0-4-8"])
def test_a_batch_gives_each_video_its_outputs_alone(which, lengths, per_frame, last_only):
    model = {"per_frame": per_frame, "last_only": last_only}[which]
    videos = _videos(lengths)
    spy = _Spy(model)
    batched = stream_predictions(spy, videos, chunk=CHUNK, imgz=SIDE, k=K, keep_probs=True)
    for got, want, n in zip(batched, _alone(model, videos), lengths, strict=True):
        assert len(got.frame_indices) == n
        _assert_same(got, want)
    # every call takes the whole batch; a model without per-frame outputs is also called at
    # each video's end inside a chunk (5-9-13: at frames 5 and 9), so it gets the output there
    assert {shape[0] for shape in spy.shapes} == {len(lengths)}
    steps = [shape[1] for shape in spy.shapes]
    if lengths == (5, 9, 13):
        assert steps == ([4, 4, 4, 1] if which == "per_frame" else [4, 1, 3, 1, 3, 1])
    assert sum(steps) == max(lengths)


def test_without_the_cut_a_short_video_would_get_its_padding_output(last_only):
    # What the cut at a video's end guards against: padded to the end of its chunk, the
    # 5-frame video's last chunk (frame 4) would get the output after the padding.
    frames = _videos((5,))[0]
    (alone,) = _alone(last_only, [frames])
    padded = stream_prediction(last_only, frames + [frames[-1]] * 3, chunk=CHUNK, imgz=SIDE, k=K,
                               keep_probs=True)
    assert np.abs(padded.frame_probs[4] / alone.frame_probs[4] - 1).max() > 10 * RTOL


def test_the_batched_step_matches_one_video_steps(per_frame):
    # MovinetStream.step on uint8 [b, t, h, w, 3] -> [b, t, C], row j that of video j alone
    videos = np.stack([np.stack([f.image for f in frames]) for frames in _videos((6, 6, 6))])
    probs, _ = per_frame.step(videos, per_frame.init_states(SIDE, batch=3))
    assert probs.shape == (3, 6, 600) and probs.dtype == np.float32
    for j in range(3):
        alone, _ = per_frame.step(videos[j], per_frame.init_states(SIDE))
        np.testing.assert_allclose(probs[j], alone, rtol=RTOL, atol=0)


def _spec():
    return SamplingSpec("fps", 5.0, 8, SIDE, 10**7, 600.0, 60.0)


def _predecoded(name, n, seed, spec=None):
    ref = VideoRef(name, f"/videos/{name}.mp4", None, "train")
    meta = VideoMeta(n / 5, 5.0, SIDE, SIDE, "h264")
    return FrameSource(ref, spec or _spec(), meta, tuple(random_frames(n, SIDE, seed=seed)),
                       VideoInfo(ref, meta, n, n, None, 0.01))


def _handler(handle, batch=None, keep_probs=True):
    return VideoHandler(Movinet(handle, "stream", 600, SIDE), StreamChunks(CHUNK), k=K,
                        keep_probs=keep_probs, batch=batch)


def _assert_results_same(got, want) -> None:
    assert [r.info.ref for r in got] == [r.info.ref for r in want]
    for mine, alone in zip(got, want, strict=True):
        assert mine.info._replace(decode_s=0, transfer_s=0) == alone.info._replace(decode_s=0, transfer_s=0)
        ((index, prediction),) = mine.clips
        assert index == 0
        _assert_same(prediction, alone.clips[0][1])


def test_the_handler_batches_predecoded_and_lazily_decoded_videos(a0_stream, per_frame, mixed_videos):
    # Lazily decoded videos each need a decoder process of their own, as a thread's decoder
    # process decodes one video at a time; all of them and two predecoded ones in one batch.
    lazily = [FrameSource(VideoRef(name, f"{mixed_videos['dir']}/{name}", None, "train"), _spec())
              for name in [*mixed_videos["good"], mixed_videos["corrupt"]]]
    sources = [_predecoded("p1", 7, 1), *lazily, _predecoded("p2", 3, 2)]
    children = len(psutil.Process().children())
    batched = _handler(a0_stream, StreamBatch(len(sources))).run_inference(sources, per_frame)
    # the batch's own decoder processes are gone; this thread's (the first lazy video's) stays
    assert len(psutil.Process().children()) <= children + 1
    _assert_results_same(batched, _handler(a0_stream).run_inference(sources, per_frame))
    assert [r.info.ref for r in batched] == [s.ref for s in sources]
    sampled = [r.info.frames_sampled for r in batched]
    assert sampled[0] == 7 and sampled[-1] == 3 and min(sampled[1:-2]) > 0 and sampled[-2] == 0
    assert batched[-2].info.error is not None  # the corrupt video: its error, no frames


def test_batching_knobs_only_for_stream_mode_on_gpu_workers_with_tensorflow(tmp_path):
    # handles that name no model (local: no network; the runtime follows the name and the config)
    def kwargs(*overrides, handle=str(tmp_path / "a0_stream")):
        cfg = load_config(None, list(overrides))
        return make_handler(cfg, ServedModel.of(cfg, handle), 600).batch_elements_kwargs()

    gathered = kwargs(f"model.accelerator={GPU}", "model.batch_size=8", "model.max_batch_duration_s=2")
    assert gathered == {"min_batch_size": 8, "max_batch_size": 8, "max_batch_duration_secs": 2,
                        "length_fn": expected_length, "bucket_boundaries": list(LENGTH_BUCKETS)}
    assert kwargs(f"model.accelerator={GPU}", "model.batch_size=8") == {"min_batch_size": 8,
                                                                        "max_batch_size": 8}
    one = {"min_batch_size": 1, "max_batch_size": 1}
    assert kwargs("model.batch_size=8", "model.max_batch_duration_s=2") == one  # CPU workers
    assert kwargs(f"model.accelerator={GPU}", "model.model_mode=base") == one
    assert kwargs(f"model.accelerator={GPU}", "model.runtime=litert") == one
    assert kwargs(f"model.accelerator={GPU}", handle=str(tmp_path / "a0.tflite")) == one
    gpu = load_config(None, [f"model.accelerator={GPU}", "model.batch_size=3"])
    assert ServedModel.of(gpu, "m").batch == StreamBatch(3, None)


def test_a_video_length_is_its_sampled_frames_and_unknown_lengths_go_last():
    spec = _spec()
    ref = VideoRef("v", "/v.mp4", None, "train")
    assert expected_length(_predecoded("p", 7, 0)) == 7
    assert expected_length(FrameSource(ref, spec, VideoMeta(10.0, 30.0, 320, 240, "h264"))) == 51
    assert expected_length(FrameSource(ref, spec._replace(strategy="uniform"), None)) == 8
    unknown = expected_length(FrameSource(ref, spec, VideoMeta(None, 30.0, 320, 240, "h264")))
    assert bisect.bisect_right(LENGTH_BUCKETS, unknown) == len(LENGTH_BUCKETS)


class _OneVideoModel:
    """A stream model without batches, as LiteRT's."""

    per_frame, batches, features = True, False, False

    def load(self):
        return MovinetStream(self)

    def init_states(self, imgz):
        return {}


def test_a_model_without_batches_fails_clearly():
    with pytest.raises(ValueError, match="one video per call.*TensorFlow"):
        VideoHandler(_OneVideoModel(), StreamChunks(4), batch=StreamBatch(4)).load_model()
    model = _OneVideoModel().load()
    with pytest.raises(ValueError, match="one video per call"):
        model.init_states(SIDE, batch=2)
    with pytest.raises(ValueError, match="one video per call"):
        model.step(np.zeros((2, 1, SIDE, SIDE, 3), np.uint8), {})
    with pytest.raises(ValueError, match="stream mode only"):
        VideoHandler(_OneVideoModel(), ClipWindows(8, 8, 4), batch=StreamBatch(2))
    with pytest.raises(ValueError, match="not a positive number"):
        VideoHandler(_OneVideoModel(), StreamChunks(4), batch=StreamBatch(0))


def test_direct_runner_gathers_batches_by_length_with_one_result_per_video(a0_stream, per_frame):
    # two short (bucket [-, 16)) and two longer (bucket [16, 32)) videos, three per call at most:
    # batched by length, they go as two calls of two (without buckets: one of three, one of one)
    sources = [_predecoded(f"v{n}", n, n) for n in (5, 17, 9, 20)]
    want = {r.info.ref.video_id: r.clips[0][1] for r in _handler(a0_stream).run_inference(sources, per_frame)}
    _PRELOADED["a0"] = per_frame
    handler = VideoHandler(_Preloaded("a0"), StreamChunks(CHUNK), k=K, keep_probs=True,
                           batch=StreamBatch(3, max_wait_s=60))

    def check(results):
        assert sorted(video_id for video_id, _ in results) == sorted(want)
        for video_id, prediction in results:
            _assert_same(prediction, want[video_id])

    p = TestPipeline("FnApiRunner")  # the DirectRunner would pick its bundle-based runner here
    results, failed = p | beam.Create(sources) | Classify(handler)
    pairs = results | beam.Map(lambda r: (r.info.ref.video_id, r.clips[0][1]))
    assert_that(pairs, check, label="SameAsAlone")
    assert_that(failed, lambda failures: len(failures) == 0 or pytest.fail(str(failures)), label="NoneFailed")
    result = p.run()
    result.wait_until_finish()
    (calls,) = result.metrics().query(MetricsFilter().with_name("videos_per_call"))["distributions"]
    assert (calls.committed.count, calls.committed.min, calls.committed.max) == (2, 2, 2)
