"""Colour augmentation of training clips for ``train.method: finetune``.

From random weights on a few dozen clips, MoViNet memorises each clip by its look (its
colours, their brightness) long before it learns the motion: training accuracy 1.00 and
validation at chance. Giving every clip new colours each time it is seen leaves the motion
as the one thing that always tells its class. The change is the same for every frame of a
clip, so what moves, and how, is untouched.
"""

from __future__ import annotations

__all__ = ["AUGMENTATIONS", "colour_jitter"]

#: Brightness is scaled by a factor in this range and shifted by up to this many levels.
SCALE = (0.7, 1.3)
SHIFT = 30.0


def colour_jitter(clips):
    """clips uint8 [batch, frames, h, w, 3] -> uint8, the same shape: each clip with its colour
    channels in a random order and its brightness scaled by 0.7-1.3 and shifted by -30..30
    levels (clipped to 0-255), the same for all its frames. Random draws follow TensorFlow's
    global seed."""
    import tensorflow as tf

    batch = tf.shape(clips)[0]
    order = tf.argsort(tf.random.uniform([batch, 3]), axis=-1)
    permuted = tf.gather(clips, order, axis=-1, batch_dims=1)
    scale = tf.random.uniform([batch, 1, 1, 1, 1], *SCALE)
    shift = tf.random.uniform([batch, 1, 1, 1, 1], -SHIFT, SHIFT)
    jittered = tf.cast(permuted, tf.float32) * scale + shift
    return tf.cast(tf.clip_by_value(tf.round(jittered), 0.0, 255.0), tf.uint8)


#: ``train.augment`` values and what each does to a batch of train clips (None: nothing).
AUGMENTATIONS = {"colour": colour_jitter, "none": None}
