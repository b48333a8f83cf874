"""The note of where a model's weights came from: written by the export, read by every tool."""

from __future__ import annotations

from models.weights_note import NOTE_FILENAME, is_random, random_weights_warning, write_note


def test_the_note_lives_beside_the_labels_and_says_random_only_when_it_is(tmp_path):
    folder = tmp_path / "saved"
    folder.mkdir()
    assert not is_random(str(folder))  # no note: a model of unknown source is taken as trained
    write_note(str(folder), random=True)
    assert (folder / NOTE_FILENAME).exists() and is_random(str(folder)) and is_random(f"{folder}/")
    write_note(str(folder), random=False, checkpoint="/ckpt/a0/ckpt-1")
    assert not is_random(str(folder))

    tflite = tmp_path / "a0.tflite"  # beside a .tflite file, as its labels.txt is
    write_note(str(tflite), random=True)
    assert (tmp_path / NOTE_FILENAME).exists() and is_random(str(tflite))
    (tmp_path / NOTE_FILENAME).write_text("not json")
    assert not is_random(str(tflite))  # an unreadable note says nothing
    assert not is_random("https://tfhub.dev/tensorflow/movinet/a0/stream/kinetics-600/classification/3")
    assert random_weights_warning("m").startswith("m has random weights (export-movinet without")
