"""``videolabel train``: features extracted by the Beam pipeline, then a Keras fit (``train_job``)."""
