"""Checks of the multi-model API (contract §2.3): list, load, invoke, unload, 404, 409, opt-in 507."""

from __future__ import annotations

import json
import time

from harness.backends.base import MULTI_MODEL_MOUNT
from harness.doctor import facts
from harness.doctor.container import MME_MODEL, DoctorContainer
from harness.doctor.options import DoctorOptions
from harness.doctor.probe import Answer, request
from harness.doctor.report import FAIL, PASS, SKIPPED, CheckResult
from harness.doctor.runtime import Startup, check_payload, invoke

UNKNOWN_MODEL = "doctor-unknown-model"
#: --check-oom loads at most this many copies of the model.
OOM_MAX_LOADS = 200
_MODEL_URL = f"{MULTI_MODEL_MOUNT}/{MME_MODEL}/model"


def _load(container: DoctorContainer, name: str) -> Answer:
    return request("POST", container.url + "/models", json={"model_name": name, "url": _MODEL_URL},
                   timeout=facts.MODEL_LOAD_TIMEOUT_S)


def _listed(answer: Answer) -> list[str] | None:
    """Model names of a GET /models body (SageMaker's {"models": [...]} or a bare list); None if neither."""
    try:
        body = json.loads(answer.body)
    except ValueError:
        return None
    entries = body.get("models") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        return None
    return [str(e.get("modelName", e.get("model_name", ""))) if isinstance(e, dict) else str(e) for e in entries]


def check_list_empty(container: DoctorContainer) -> CheckResult:
    answer = request("GET", container.url + "/models")
    names = _listed(answer) if answer.status == 200 else None
    if answer.status == 200 and names == []:
        return CheckResult("mme-list-empty", PASS, "GET /models answered 200 with no models")
    return CheckResult("mme-list-empty", FAIL,
                       f"GET /models with nothing loaded answered {answer.describe()}; SageMaker polls it with "
                       f"/ping, so {facts.PING_FAILURE} (contract §2.3, pytorch/serve#1028)",
                       'answer GET /models with 200 and {"models": []} from the moment the server listens')


def _load_invoke_unload(container: DoctorContainer, options: DoctorOptions, listing: bool) -> tuple[bool, str | None]:
    """Whether the model loaded, and why the load / list / invoke round failed (None: it passed). The
    listing is left to mme-list-empty when that failed (``listing`` False)."""
    loaded = _load(container, MME_MODEL)
    if not loaded.ok():
        return False, f"POST /models (load {MME_MODEL} from {_MODEL_URL}) answered {loaded.describe()}"
    listed = request("GET", container.url + "/models")
    if listing and MME_MODEL not in (_listed(listed) or []):
        return True, f"after the load, GET /models answered {listed.describe()} without {MME_MODEL}"
    if options.sample is not None:
        answer = invoke(container, options, MME_MODEL)
        if not answer.ok():
            return True, f"POST /models/{MME_MODEL}/invoke answered {answer.describe()}"
    return True, None


def _unload(container: DoctorContainer) -> str | None:
    gone = request("DELETE", container.url + f"/models/{MME_MODEL}", timeout=facts.MODEL_LOAD_TIMEOUT_S)
    if gone.status != 200:
        return f"DELETE /models/{MME_MODEL} answered {gone.describe()}"
    after = request("GET", container.url + f"/models/{MME_MODEL}")
    if after.status != 404:
        return f"after the unload, GET /models/{MME_MODEL} answered {after.describe()}, not 404"
    return None


def check_duplicate(container: DoctorContainer) -> CheckResult:
    again = _load(container, MME_MODEL)
    if again.status == 409:
        return CheckResult("mme-duplicate-409", PASS, f"loading {MME_MODEL} again answered 409")
    return CheckResult("mme-duplicate-409", FAIL,
                       f"loading {MME_MODEL} a second time answered {again.describe()}, not 409: SageMaker reads "
                       "409 as \"already loaded\" (contract §2.3); anything else is a failed load and the "
                       "client's request fails", "answer 409 to POST /models for a model_name already loaded")


def check_unknown(container: DoctorContainer, options: DoctorOptions) -> CheckResult:
    answers = {f"{method} {path}": request(method, container.url + path, content=b"{}" if method == "POST" else None,
                                           headers={"Content-Type": "application/json"})
               for method, path in (("GET", f"/models/{UNKNOWN_MODEL}"), ("DELETE", f"/models/{UNKNOWN_MODEL}"),
                                    ("POST", f"/models/{UNKNOWN_MODEL}/invoke"))}
    wrong = {what: a.describe() for what, a in answers.items() if a.status != 404}
    if not wrong:
        return CheckResult("mme-unknown-404", PASS, f"GET, DELETE and invoke of {UNKNOWN_MODEL} answered 404")
    return CheckResult("mme-unknown-404", FAIL,
                       f"for a model that is not loaded: {wrong}; SageMaker needs 404 to know a model is not "
                       "loaded (contract §2.3)", "answer 404 for a model_name that is not loaded")


def check_oom(container: DoctorContainer, options: DoctorOptions) -> CheckResult:
    """Load copies until 507 (pass), an OOM kill (fail), or OOM_MAX_LOADS (skipped: no pressure reached)."""
    deadline = time.monotonic() + facts.MODEL_LOAD_TIMEOUT_S
    for index in range(OOM_MAX_LOADS):
        answer = _load(container, f"doctor-oom-{index}")
        if answer.status == 507:
            return CheckResult("mme-507", PASS, f"load {index + 1} answered 507 before memory ran out")
        state = container.state()
        if not state.get("Running"):
            killed = "OOM-killed" if state.get("OOMKilled") else f"exited ({state.get('ExitCode')})"
            return CheckResult("mme-507", FAIL, f"after {index + 1} loads the container was {killed} without "
                               "answering 507: SageMaker unloads unused models only on 507 (contract §2.2 step 6); "
                               "here the instance dies and is replaced",
                               "check free memory before loading and answer 507 when a model would not fit")
        if not answer.ok() or time.monotonic() > deadline:
            return CheckResult("mme-507", SKIPPED, f"load {index + 1} answered {answer.describe()} before any "
                               "memory pressure")
    return CheckResult("mme-507", SKIPPED, f"{OOM_MAX_LOADS} copies fit in {options.instance_type}'s memory: no "
                       "pressure reached (choose a smaller --instance-type)")


def mme_checks(container: DoctorContainer, options: DoctorOptions, startup: Startup) -> list[CheckResult]:
    """Every MME check, in order; skipped with one reason when the server never became ready."""
    names = ["mme-list-empty", "mme-load-invoke-unload", "mme-duplicate-409", "payload-6mb", "mme-unknown-404",
             "mme-507"]
    if startup.outcome != "ready":
        return [CheckResult(name, SKIPPED, "the server never answered /ping 200") for name in names]
    results = [check_list_empty(container)]
    if options.model_data is None:
        results += [CheckResult(name, SKIPPED, "no --model-data to load") for name in names[1:4]]
    else:
        loaded, problem = _load_invoke_unload(container, options, listing=results[0].verdict == PASS)
        results += [check_duplicate(container) if loaded else CheckResult("mme-duplicate-409", SKIPPED, "no load")]
        results.append(check_payload(container, options, startup, MME_MODEL if loaded else ""))
        problem = problem or (_unload(container) if loaded else None)
        results.insert(1, _round_verdict(problem, options))
    results.append(check_unknown(container, options))
    if not options.check_oom:
        results.append(CheckResult("mme-507", SKIPPED, "opt-in: --check-oom"))
    elif options.model_data is None:
        results.append(CheckResult("mme-507", SKIPPED, "no --model-data to load"))
    else:
        results.append(check_oom(container, options))
    return results


def _round_verdict(problem: str | None, options: DoctorOptions) -> CheckResult:
    if problem is None:
        invoked = "invoke, " if options.sample is not None else ""
        return CheckResult("mme-load-invoke-unload", PASS, f"load, list, {invoked}unload, then 404 (contract §2.3)")
    return CheckResult("mme-load-invoke-unload", FAIL, f"{problem}; SageMaker drives a model exactly this way "
                       "(contract §2.2, §2.3), so the invocation fails with ModelError",
                       "implement POST /models, GET /models, POST /models/{name}/invoke and DELETE "
                       "/models/{name} as docs/sagemaker-contract.md §2.3 describes")
