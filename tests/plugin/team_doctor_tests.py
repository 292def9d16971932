"""A team's doctor tests (docs/testing.md): ``servekit_doctor`` on the image, with the model and a sample
request, before any endpoint test. Run by tests/plugin/test_plugin.py beside team_image_tests.py
(docker backend only: the doctor runs the image itself)."""

from __future__ import annotations

import json

from test_team import IMAGE, model_dir


def test_doctor_passes_the_image_with_its_model(servekit_doctor, tmp_path):
    sample = ("application/json", json.dumps({"values": [1]}).encode())
    report = servekit_doctor(IMAGE, model_data=str(model_dir(tmp_path, "single", 3.0)), sample=sample)
    assert report.ok, report.table()


def test_doctor_fails_the_image_without_a_model(servekit_doctor):
    report = servekit_doctor(IMAGE, stop_grace_s=5)
    assert not report.ok and "starts" in [c.name for c in report.checks if c.verdict == "fail"], report.table()
