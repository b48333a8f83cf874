# Two commands do all set-up: `make demo` and `make test`. Both create .venv here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The checkout itself on sys.path (CHECKOUT_PTH), before setuptools' editable import finder: that finder
# comes after the current folder, so a run started in a folder with its own models/ or transforms/ (a
# common name for a folder of model files) imported that folder as the package, in each worker process.
CHECKOUT_PTH := import os, site; open(os.path.join(site.getsitepackages()[0], "videolabel-checkout.pth"), "w").write(os.getcwd() + "\n")
STAMP := $(VENV)/.installed-$(shell (cat setup.py requirements.lock; echo '$(CHECKOUT_PTH)') | cksum | cut -d' ' -f1)

.PHONY: install system-deps flink label-studio demo test lint bench image clean

$(STAMP): setup.py requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel "setuptools<81"
	$(PY) -m pip install --quiet -c requirements.lock -e ".[export,test,app]"
	$(PY) -c '$(CHECKOUT_PTH)'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/videolabel demo --output demo_output

# ruff, and the dependency rule of pyproject.toml's [tool.importlinter] (layers, no import cycles).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Debian's chromium: the tests open `videolabel report`'s HTML in a real headless browser, and
# drive `videolabel app` in it through Debian's chromedriver (selenium; no driver downloads).
system-deps:
	@{ command -v chromium && command -v chromedriver; } >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Beam's Flink job server (configs/flink.yaml): Maven fetches the jars pom.xml pins into the user cache
# (~/.cache/videolabel/flink), each checked against jars.sha256; a run never downloads. Needs a JDK and
# Maven (mvn); the tests run Flink from these jars too.
flink: $(STAMP)
	$(PY) -m beam_pipeline.job.flink.jobserver fetch

# A real Label Studio for the review loop's test (tests/label_studio.py), in a virtualenv of its own: its
# pins (numpy < 2.3 through opencv, protobuf 7, pyarrow 24) clash with TensorFlow's and Beam's.
LABEL_STUDIO := .venv-labelstudio
LABEL_STUDIO_VERSION := 1.23.2
$(LABEL_STUDIO)/.installed-$(LABEL_STUDIO_VERSION):
	test -x $(LABEL_STUDIO)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO)
	$(LABEL_STUDIO)/bin/python -m pip install --quiet --upgrade pip
	$(LABEL_STUDIO)/bin/python -m pip install --quiet "label-studio==$(LABEL_STUDIO_VERSION)"
	rm -f $(LABEL_STUDIO)/.installed-*
	touch $@

# A data folder migrated once (about 30 s of Django migrations), which each test's server starts from.
$(LABEL_STUDIO)/data-template: $(LABEL_STUDIO)/.installed-$(LABEL_STUDIO_VERSION) $(STAMP)
	$(PY) -m tests.label_studio

label-studio: $(LABEL_STUDIO)/data-template

# Two test workers (pytest-xdist), each given whole test modules (so a module's fixtures are built
# once); the models are built once for both (tests/conftest.py). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: lint system-deps flink label-studio
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Throughput against the machine's ceilings and the hand-written loop (docs/PERFORMANCE.md).
bench: $(STAMP)
	$(PY) -m pip install --quiet -c requirements.lock -e ".[export,test,app,bench]"
	$(PY) -m benchmarks.throughput
	$(PY) -m benchmarks.embeddings

# The Dataflow worker image (Dockerfile): Beam's SDK image + TensorFlow with CUDA + this project.
IMAGE ?= videolabel-worker:$(shell $(PYTHON) -c "import re; print(re.search(r'version=\"([^\"]+)', open('setup.py').read()).group(1))")
image:
	docker build -t $(IMAGE) .
	@echo "built $(IMAGE); push it (docker push $(IMAGE)) and pass --sdk_container_image=$(IMAGE)"

clean:
	rm -rf demo_output .pytest_cache build *.egg-info
