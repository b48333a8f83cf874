"""MoveNet pose keypoints on the real ASL clips in ../shared/fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from models.movenet import COCO_JOINTS, load_movenet
from tests.conftest import SHARED_FIXTURES, shared_fixture
from transforms.decoding import DecodeReport, sample_frames
from transforms.records import SamplingSpec

SPEC = SamplingSpec("uniform", 5.0, 9, 192, 10**7, 600.0, 60.0)


@pytest.fixture(scope="module")
def movenet():
    return load_movenet(str(shared_fixture("models", "movenet_single_pose_lightning_ptq.tflite")))


def _frames(path) -> np.ndarray:
    report = DecodeReport()
    frames = [f.image for f in sample_frames(str(path), SPEC, report)]
    assert report.error is None and len(frames) == 9
    return np.stack(frames)


def test_movenet_finds_the_signer_in_most_frames_of_every_clip(movenet):
    clips = sorted((SHARED_FIXTURES / "videos" / "asl_gestures").glob("*.mkv"))
    if not clips:
        pytest.skip("no ASL clips under ../shared/fixtures/videos/asl_gestures")
    assert len(COCO_JOINTS) == 17 and movenet.size == 192
    found = total = 0
    nose, shoulder = COCO_JOINTS.index("nose"), COCO_JOINTS.index("left_shoulder")
    for clip in clips:
        points = movenet.keypoints(_frames(clip), threshold=0.3)
        assert points.shape == (9, 17, 3) and points.dtype == np.float32
        visible = (points[..., 2] > 0).sum(axis=1)
        person = visible >= 8
        found += int(person.sum())
        total += len(person)
        # an upright signer: nose above the shoulders where both are seen
        both = (points[:, nose, 2] > 0) & (points[:, shoulder, 2] > 0)
        assert np.all(points[both, nose, 0] < points[both, shoulder, 0])
        assert np.all((points[..., :2] >= 0) & (points[..., :2] <= 1))
    assert found / total >= 0.8, f"a person in {found} of {total} frames"


def test_weak_joints_become_zeros(movenet):
    frames = _frames(shared_fixture("videos", "asl_gestures", "book.mkv"))
    strict = movenet.keypoints(frames[:2], threshold=1.01)
    assert not strict.any()
    loose = movenet.keypoints(frames[:2], threshold=0.0)
    assert (loose[..., 2] > 0).all()
    # frames of another size are resized to the model's input first
    small = movenet.keypoints(frames[:2, ::2, ::2], threshold=0.0)
    assert small.shape == (2, 17, 3)
