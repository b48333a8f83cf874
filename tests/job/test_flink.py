"""Flink's start-up side, without a JVM: the checks and flags of a Flink run, the job server jar's
manifest and checksums, and the SDK worker boot against a real provision service."""

from __future__ import annotations

import argparse
import json
import zipfile
from concurrent import futures

import grpc
import pytest
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PortableOptions
from apache_beam.portability.api import beam_provision_api_pb2, beam_provision_api_pb2_grpc
from google.protobuf import json_format, struct_pb2

from beam_pipeline.cli import main
from beam_pipeline.config import ConfigError, load_config
from beam_pipeline.job.flags import flink_flags, unknown_flag
from beam_pipeline.job.flink import jobserver, sdk_boot
from beam_pipeline.job.flink.checks import EMBEDDED_CONF, check_flink, workers_here
from beam_pipeline.job.options import pipeline_options
from tests.conftest import REPO

FLINK = str(REPO / "configs" / "flink.yaml")


@pytest.fixture
def fake_jar(tmp_path, monkeypatch):
    """A job server "fetched" into a cache of this test's own (no JVM starts in these tests)."""
    monkeypatch.setenv("VIDEOLABEL_FLINK_CACHE", str(tmp_path / "cache"))
    jar = jobserver.cache_dir() / jobserver.JAR_NAME
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    return jar


def _settled(extra=(), sets=()):
    cfg = load_config(FLINK, list(sets))
    return check_flink(cfg, pipeline_options(cfg.runner, list(extra)), cores=3)


def test_configs_flink_yaml_settles_to_an_embedded_flink_with_process_workers(fake_jar):
    options = _settled()
    flink, portable = options.view_as(FlinkRunnerOptions), options.view_as(PortableOptions)
    assert flink.flink_job_server_jar == str(fake_jar) and flink.flink_version == jobserver.versions()[1]
    # one slot and one SDK worker process a core
    assert flink.parallelism == 3 and int(portable.sdk_worker_parallelism) == 3
    assert portable.environment_type == "PROCESS"
    boot = portable.lookup_environment_option("process_command")
    assert boot.endswith("/videolabel-sdk-worker") and open(boot).read().startswith("#!")
    all_options = options.get_all_options(retain_unknown_options=True)
    assert all_options["flink_conf_dir"] == str(EMBEDDED_CONF)  # its restart strategy
    assert "restart-strategy.type:" in (EMBEDDED_CONF / "flink-conf.yaml").read_text()
    assert workers_here(options)


def test_a_cluster_keeps_its_own_parallelism_and_conf_and_an_external_pool_needs_its_address(fake_jar):
    options = _settled(["--flink_master=flink-jm.example:8081", "--environment_type=EXTERNAL",
                        "--environment_config=localhost:50000", "--flink_conf_dir=/etc/flink"])
    assert options.view_as(FlinkRunnerOptions).parallelism == -1 and not workers_here(options)
    assert options.get_all_options(retain_unknown_options=True)["flink_conf_dir"] == "/etc/flink"
    assert workers_here(_settled(["--flink_master=127.0.0.1:8081"]))
    with pytest.raises(ConfigError, match=r"^--environment_type=EXTERNAL: set --environment_config="):
        _settled(["--environment_type=EXTERNAL"])


@pytest.mark.parametrize(("extra", "sets", "message"), [
    (["--environment_type=LOOPBACK"], [], r"^--environment_type=LOOPBACK: on Flink the SDK workers would be"),
    (["--flink_submit_uber_jar"], [], r"^--flink_submit_uber_jar: needs Beam's shaded"),
    (["--flink_job_server_jar=/nowhere/js.jar"], [], r"^--flink_job_server_jar: '/nowhere/js.jar' is not a"),
    (["--job_server_java_launcher=no-such-java"], [], r"^FlinkRunner: 'no-such-java' is not on PATH"),
    ([], ["model.max_batch_duration_s=5"], r"^model.max_batch_duration_s: on Flink's batch mode"),
])
def test_what_cannot_work_on_flink_is_refused_in_one_line(fake_jar, extra, sets, message):
    with pytest.raises(ConfigError, match=message) as refused:
        _settled(extra, sets)
    assert "\n" not in str(refused.value)


def test_a_run_without_the_fetched_job_server_says_to_run_make_flink(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDEOLABEL_FLINK_CACHE", str(tmp_path / "empty"))
    code = main(["run", "--config", FLINK, "--input", str(tmp_path / "*.mp4"),
                 "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "run `make flink` (needs a JDK and Maven)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_flink_runners_own_flags_pass_only_with_flink(fake_jar):
    assert {"--max_bundle_size", "--flink_conf_dir", "--environment_expiration_millis"} <= flink_flags()
    assert unknown_flag(["--max_bundle_size=100"]) is None  # known before the runner is
    assert unknown_flag(["--max_bundel_size=100"]) == (
        "--max_bundel_size: not a videolabel or Beam pipeline option (did you mean --max_bundle_size?)")
    options = _settled(["--max_bundle_size=100"])
    assert options.get_all_options(retain_unknown_options=True)["max_bundle_size"] == "100"
    with pytest.raises(ConfigError, match=r"^--max_bundle_size: an option of Beam's Flink runner; it needs "
                                          r"--runner=FlinkRunner$"):
        pipeline_options({"runner": "DirectRunner"}, ["--max_bundle_size=100"])


def _unwrapped(manifest: bytes) -> dict[str, str]:
    """A manifest's headers, continuation lines joined (the JAR spec's reading)."""
    headers, last = {}, None
    for line in manifest.decode().split("\r\n"):
        if line.startswith(" ") and last:
            headers[last] += line[1:]
        elif ": " in line:
            last, value = line.split(": ", 1)
            headers[last] = value
    return headers


def test_the_job_server_manifest_wraps_at_72_bytes_and_names_every_jar():
    jars = [f"a-very-long-artifact-name-for-wrapping-{i:03d}-{'x' * (i % 40)}.jar" for i in range(120)]
    manifest = jobserver.manifest(jars)
    assert max(len(line) for line in manifest.split(b"\r\n")) <= 72
    headers = _unwrapped(manifest)
    assert headers["Main-Class"] == jobserver.DRIVER and headers["Class-Path"].split(" ") == sorted(jars)


def test_a_changed_missing_or_unpinned_jar_is_named(tmp_path):
    (tmp_path / "a.jar").write_bytes(b"a")
    (tmp_path / "b.jar").write_bytes(b"tampered")
    (tmp_path / "extra.jar").write_bytes(b"e")
    (tmp_path / jobserver.JAR_NAME).write_bytes(b"ours")
    pins = {"a.jar": jobserver._sha256(tmp_path / "a.jar"), "b.jar": "0" * 64, "c.jar": "1" * 64}
    assert jobserver._verified(tmp_path, pins) == ["missing c.jar", "not pinned: extra.jar",
                                                   "checksum differs: b.jar"]
    assert jobserver._verified(tmp_path, {k: v for k, v in pins.items() if k == "a.jar"}) == [
        "not pinned: b.jar", "not pinned: extra.jar"]


def test_the_pins_cover_the_pom_and_a_fetched_folder_matches_them():
    pins = jobserver.pinned()
    beam, flink = jobserver.versions()
    assert f"beam-runners-flink-{flink}-{beam}.jar" in pins and len(pins) > 100
    assert all(len(digest) == 64 for digest in pins.values())
    jar = jobserver.job_server_jar()
    if jar is None:
        pytest.skip("Beam's Flink job server is not fetched (make flink)")
    assert jobserver._verified(jar.parent, pins) == []
    with zipfile.ZipFile(jar) as composite:
        assert set(_unwrapped(composite.read("META-INF/MANIFEST.MF"))["Class-Path"].split()) == set(pins)


class _Provision(beam_provision_api_pb2_grpc.ProvisionServiceServicer):
    def __init__(self, info):
        self.info, self.asked_by = info, []

    def GetProvisionInfo(self, request, context):
        self.asked_by.append(dict(context.invocation_metadata()).get("worker_id"))
        return beam_provision_api_pb2.GetProvisionInfoResponse(info=self.info)


def test_the_boot_gives_the_worker_the_jobs_options_and_endpoints():
    options = struct_pb2.Struct()
    options.update({"beam:option:job_name:v1": "flink-job", "beam:option:pickle_library:v1": "cloudpickle"})
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=options, runner_capabilities=["beam:cap:x"])
    info.logging_endpoint.url = "localhost:7001"
    service = _Provision(info)
    server = grpc.server(futures.ThreadPoolExecutor(2))
    beam_provision_api_pb2_grpc.add_ProvisionServiceServicer_to_server(service, server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        env = sdk_boot.worker_environment(argparse.Namespace(
            id="1-7", provision_endpoint=f"localhost:{port}", control_endpoint="localhost:7000",
            logging_endpoint=None, artifact_endpoint=None, semi_persistent_directory=None))
    finally:
        server.stop(None)
    assert service.asked_by == ["1-7"]
    assert json.loads(env["PIPELINE_OPTIONS"]) == json_format.MessageToDict(options)
    assert env["CONTROL_API_SERVICE_DESCRIPTOR"].strip() == 'url: "localhost:7000"'
    assert env["LOGGING_API_SERVICE_DESCRIPTOR"].strip() == 'url: "localhost:7001"'  # from the provision info
    assert env["WORKER_ID"] == "1-7" and env["RUNNER_CAPABILITIES"] == "beam:cap:x"
    from apache_beam.runners.worker.sdk_worker_main import _parse_pipeline_options

    parsed = _parse_pipeline_options(env["PIPELINE_OPTIONS"]).get_all_options()
    assert parsed["job_name"] == "flink-job" and parsed["pickle_library"] == "cloudpickle"
