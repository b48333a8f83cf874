"""The models alone, arrays in and probabilities out, with no Beam: MoViNet base and stream (TensorFlow
and LiteRT), its graph, export and conversion, MoveNet keypoints, the pose LSTM, and training.

The Beam side (one ModelHandler for every model) is ``transforms.video_handler``; the interfaces it
drives are in ``models.video_model``."""
