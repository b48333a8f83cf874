"""videolabel: a distributed batch video-labelling job (Apache Beam + TensorFlow + PyAV).

Installs the packages ``beam_pipeline``, ``transforms`` and ``models`` and the
``videolabel`` command. Dataflow workers install it through ``--setup_file``.
"""

from setuptools import find_packages, setup

setup(
    name="videolabel",
    version="0.1.0",
    description="Label every video and frame of an archive with MoViNet on Apache Beam",
    python_requires=">=3.10",
    packages=find_packages(include=[f"{top}{sub}" for top in ("beam_pipeline", "transforms", "models")
                                    for sub in ("", ".*")]),
    package_data={"models": ["labels/*.txt"], "beam_pipeline.job": ["beam_flags.txt"],
                  "beam_pipeline.job.flink": ["pom.xml", "jars.sha256", "flink_flags.txt",
                                              "conf/flink-conf.yaml"]},
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "tensorflow==2.20.0",
        "tf-keras~=2.20.0",
        "tensorflow-hub==0.16.1",
        # LiteRT runs stream models on CPU workers without TensorFlow (models.movinet_tflite).
        "ai-edge-litert==2.3.0",
        "av>=14,<19",
        "pyarrow>=17",
        "google-cloud-storage>=2.18",
        "numpy>=1.26",
        "PyYAML>=6",
        "pydantic>=2.6,<3",  # the config models (beam_pipeline.config, models.training)
        # nearest neighbours of embeddings: near-duplicates, more like this (beam_pipeline.outputs.similar)
        "faiss-cpu>=1.8",
        "scipy>=1.10",  # groups of near-duplicates: connected components of the neighbour graph
        # tensorflow-hub 0.16 imports pkg_resources, which setuptools 81 removed.
        "setuptools<81",
    ],
    extras_require={
        # MoViNet export (videolabel export-movinet) and the tests that build models.
        "export": ["tf-models-official==2.20.0"],
        # import-linter checks the layers in pyproject.toml (make lint).
        # pytest-xdist: `make test` runs the suite on two test workers (tests/conftest.py).
        "test": ["pytest>=8", "pytest-xdist>=3.6", "ruff>=0.6", "import-linter>=2.17", "duckdb>=1.0",
                 "gcp-storage-emulator>=2024.8",
                 # tests/app/test_app.py drives `videolabel app` in Debian's chromium + chromedriver.
                 "selenium>=4.20"],
        # `videolabel app`: label one video, browse a run (beam_pipeline/app/serve.py).
        "app": ["streamlit>=1.40"],
        # benchmarks.ray_peer: the same job on Ray Data, which `make bench` runs beside videolabel.
        "bench": ["ray[data]==2.60.0"],
    },
    entry_points={"console_scripts": ["videolabel=beam_pipeline.cli:console_main",
                                    # the SDK worker boot Flink starts (beam_pipeline/job/flink/sdk_boot.py)
                                    "videolabel-sdk-worker=beam_pipeline.job.flink.sdk_boot:main"]},
)
