# Dataflow worker image for videolabel: Beam's Python SDK image (the Beam version setup.py pins,
# the Python the workers run), TensorFlow with its CUDA libraries, and this project.
#   make image IMAGE=REGION-docker.pkg.dev/PROJECT/REPOSITORY/videolabel:TAG && docker push that image
# then run with --sdk_container_image=that image --sdk_location=container (configs/dataflow_gpu.yaml).
# The NVIDIA driver comes from Dataflow ("install-nvidia-driver" in the accelerator hint);
# the CUDA and cuDNN libraries come from TensorFlow's and-cuda wheels.
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

WORKDIR /opt/videolabel
COPY setup.py requirements.lock README.md ./
COPY beam_pipeline beam_pipeline
COPY transforms transforms
COPY models models
RUN pip install --no-cache-dir -c requirements.lock "tensorflow[and-cuda]==2.20.0" . \
    && python -c "import apache_beam, tensorflow, av, beam_pipeline.job.pipeline; print(apache_beam.__version__)"

ENV TF_CPP_MIN_LOG_LEVEL=2
# The Beam image's entrypoint (/opt/apache/beam/boot) starts the SDK harness; it stays as it is.
