"""``servekit doctor``: run any serving image as SageMaker runs it and say why it would fail there.

    from harness.doctor import DoctorOptions, run_doctor
    report = run_doctor("my-image:latest", DoctorOptions(model_data="model/", sample=("text/csv", b"1,2")))
    assert report.ok, report.table()

docs/doctor.md describes every check, the SageMaker message it prevents and the fix.
"""

from harness.doctor.image import DoctorError
from harness.doctor.options import DoctorOptions
from harness.doctor.report import FAIL, PASS, SKIPPED, CheckResult, DoctorReport
from harness.doctor.run import run_doctor

__all__ = ["FAIL", "PASS", "SKIPPED", "CheckResult", "DoctorError", "DoctorOptions", "DoctorReport", "run_doctor"]
