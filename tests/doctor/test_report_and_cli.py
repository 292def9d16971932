"""The report's formats, the CLI's flags and exit codes, and the instance-architecture rule (no Docker
needed, except the CLI run on the control image, marked ``images``)."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

from harness.backends.base import PortRanges
from harness.cli import main
from harness.doctor import FAIL, PASS, SKIPPED, CheckResult, DoctorOptions, DoctorReport
from harness.doctor.container import MME_MODEL, stage_model_data, start_container
from harness.doctor.image import DoctorError, instance_architecture

REPORT = DoctorReport("img:1", [CheckResult("architecture", PASS, "amd64"),
                                CheckResult("sigterm", FAIL, "still running", "exit on SIGTERM"),
                                CheckResult("mme-507", SKIPPED, "opt-in: --check-oom")])


def test_report_is_not_ok_when_a_check_failed_and_ok_when_only_skipped() -> None:
    assert not REPORT.ok and REPORT.failed() == ["sigterm"]
    assert DoctorReport("img", [CheckResult("a", PASS, ""), CheckResult("b", SKIPPED, "why")]).ok


def test_json_carries_every_check() -> None:
    data = json.loads(REPORT.to_json())
    assert data["ok"] is False and data["image"] == "img:1"
    assert [(c["name"], c["verdict"], c["fix"]) for c in data["checks"]] == [
        ("architecture", PASS, ""), ("sigterm", FAIL, "exit on SIGTERM"), ("mme-507", SKIPPED, "")]


def test_junit_has_one_case_per_check_with_failure_and_skipped() -> None:
    suite = ElementTree.fromstring(REPORT.to_junit())
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    failure = cases["sigterm"].find("failure")
    assert failure is not None and "exit on SIGTERM" in (failure.text or "")
    assert cases["mme-507"].find("skipped") is not None
    assert cases["architecture"].find("failure") is None


def test_table_shows_verdicts_and_the_fix_of_failures_only() -> None:
    table = REPORT.table()
    assert "sigterm" in table and "fix: exit on SIGTERM" in table and "FAILED: sigterm" in table
    assert table.count("fix:") == 1


@pytest.mark.parametrize(("instance", "arch"), [
    ("ml.m5.large", "amd64"), ("ml.c7g.xlarge", "arm64"), ("ml.m6gd.large", "arm64"), ("ml.c6gn.large", "arm64"),
    ("ml.r7gd.2xlarge", "arm64"), ("ml.g5.xlarge", "amd64"), ("ml.g4dn.xlarge", "amd64"), ("ml.inf2.xlarge", "amd64"),
])
def test_graviton_families_are_arm64(instance: str, arch: str) -> None:
    assert instance_architecture(instance) == arch


def test_a_malformed_instance_type_is_refused() -> None:
    with pytest.raises(DoctorError, match="ml.<family>.<size>"):
        instance_architecture("m5.large")


@pytest.mark.parametrize("instance", ["ml.m5.larg", "ml.r7g.2xlarge"])
def test_an_instance_type_sagemaker_does_not_host_on_is_refused(instance: str) -> None:
    # Checking it would mean guessing its CPUs and memory (harness.instance_types.limits_for).
    with pytest.raises(DoctorError, match=f"--instance-type {instance}: not a SageMaker hosting instance type"):
        instance_architecture(instance)


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    for flag in ("--model-data", "--instance-type", "--env", "--mme", "--sample", "--json", "--junit",
                 "--image-size-limit-gb", "--startup-timeout", "--check-oom"):
        assert flag in out


def test_check_oom_without_mme_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "any:image", "--check-oom"]) == 2
    assert "--check-oom needs --mme" in capsys.readouterr().err


def test_unreadable_sample_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "any:image", "--sample", f"text/csv:{tmp_path / 'missing.csv'}"])
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.images
def test_missing_image_exits_2_naming_it(docker_engine: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "servekit-doctor-no-such-image:none"]) == 2
    assert "servekit-doctor-no-such-image:none is not in the local Docker engine" in capsys.readouterr().err


@pytest.mark.images
def test_cli_json_junit_and_exit_codes(test_images: dict[str, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    sample = tmp_path / "row.json"
    sample.write_text("[[1, 2]]")
    junit = tmp_path / "doctor.xml"
    common = ["--sample", f"application/json:{sample}", "--stop-grace", "3", "--json", "--junit", str(junit)]
    assert main(["doctor", test_images["good"], *common]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is True
    assert "[doctor] sending SIGTERM" in captured.err
    assert ElementTree.parse(junit).getroot().get("failures") == "0"
    assert main(["doctor", test_images["exit"], *common]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert ElementTree.parse(junit).getroot().get("failures") == "1"


def test_model_data_archive_is_extracted_and_mme_gets_a_models_root(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "model.joblib").write_bytes(b"weights")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "model.joblib", arcname="model.joblib")
    single = stage_model_data(DoctorOptions(model_data=str(archive)), tmp_path / "single")
    assert (single / "model.joblib").read_bytes() == b"weights"
    root = stage_model_data(DoctorOptions(model_data=str(source), mme=True), tmp_path / "mme")
    assert (root / MME_MODEL / "model" / "model.joblib").read_bytes() == b"weights"


def test_missing_model_data_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DoctorError, match="--model-data /nonexistent/model.tar.gz"):
        stage_model_data(DoctorOptions(model_data="/nonexistent/model.tar.gz"), tmp_path / "w")


@pytest.mark.images
def test_an_image_docker_cannot_start_is_refused_and_leaves_no_container(test_images: dict[str, str]) -> None:
    # The arm64 test image is FROM scratch: no python3 to exec on any host, so `docker start` fails.
    before = docker_ids()
    with pytest.raises(DoctorError, match="docker start .* failed"):
        start_container(test_images["arm64"], DoctorOptions(), Path("/tmp"), PortRanges())
    assert docker_ids() == before


def docker_ids() -> set[str]:
    out = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", "label=servekit.doctor=1"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return set(out.split())
