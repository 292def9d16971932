from __future__ import annotations

import json

from tests.harness.conftest import IMAGE, boto_clients, deploy, make_tar


def test_single_model_round_trip(fake_harness, tmp_path):
    sm, rt = boto_clients(fake_harness.endpoint_url)
    archive = make_tar(tmp_path / "m" / "model.tar.gz", {"model.joblib": b"x", "code/inference.py": b"#"})
    deploy(sm, "ep1", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"file://{archive}",
                                        "Environment": {"USER_SETTING": "42"}})
    r = rt.invoke_endpoint(EndpointName="ep1", Body=b"1,2", ContentType="text/csv", Accept="application/json",
                           CustomAttributes="trace=1")
    seen = json.loads(r["Body"].read())
    assert seen["files"] == ["code/inference.py", "model.joblib"]
    assert seen["content_type"] == "text/csv" and seen["accept"] == "application/json"
    assert seen["user_env"] == "42"
    assert r["InvokedProductionVariant"] == "AllTraffic"
    assert r["CustomAttributes"] == "seen=trace=1"
    assert r["ContentType"] == "application/json"
