"""``run_doctor``: the metadata checks, then the image run as SageMaker runs it, then the verdicts."""

from __future__ import annotations

from collections.abc import Callable

from harness.backends.base import PortRanges
from harness.doctor import mme, runtime
from harness.doctor.container import DoctorContainer, remove_work_dir, stage_model_data, start_container, work_dir
from harness.doctor.image import ImageInfo, host_architecture, metadata_checks
from harness.doctor.options import DoctorOptions
from harness.doctor.report import FAIL, SKIPPED, CheckResult, DoctorReport

#: Every run-time check, in report order (MME runs replace the invocation checks with the mme-* ones).
SINGLE_MODEL_CHECKS = ("starts", "ping-startup", "ping-latency", "ports", "ready-means-ready", "model-loads",
                       "payload-6mb", "idle-memory", "read-only-model", "sigterm")


def _say(options: DoctorOptions) -> Callable[[str], None]:
    return options.progress or (lambda _line: None)


def run_doctor(image: str, options: DoctorOptions) -> DoctorReport:
    """Check ``image`` as SageMaker would run it; DoctorError (one line) when it cannot be run at all."""
    say = _say(options)
    say(f"inspecting {image}")
    info = ImageInfo.inspect(image)
    report = DoctorReport(image, metadata_checks(info, options))
    if info.architecture != host_architecture():
        reason = f"the image is {info.architecture}; this host runs {host_architecture()} (no emulation used)"
        names = SINGLE_MODEL_CHECKS if not options.mme else _mme_names()
        report.checks += [CheckResult(name, SKIPPED, reason) for name in names]
        return report
    work = work_dir()
    try:
        mount = stage_model_data(options, work)
        say(f"starting {image} serve ({options.instance_type}{', MME' if options.mme else ''})")
        container = start_container(image, options, mount, PortRanges())
        try:
            report.checks += _run_checks(container, options, say)
        finally:
            container.remove()
    finally:
        remove_work_dir(work)
    return report


def _mme_names() -> tuple[str, ...]:
    return ("starts", "ping-startup", "ping-latency", "ports", "mme-list-empty", "mme-load-invoke-unload",
            "mme-duplicate-409", "payload-6mb", "mme-unknown-404", "mme-507", "idle-memory", "read-only-model",
            "sigterm")


def _run_checks(container: DoctorContainer, options: DoctorOptions, say: Callable[[str], None]) -> list[CheckResult]:
    say(f"waiting for /ping on 127.0.0.1:{container.port} (up to {options.startup_timeout_s:.0f} s)")
    startup = runtime.wait_startup(container, options)
    say(f"start-up: {startup.outcome} after {startup.seconds:.1f} s")
    results = [runtime.check_ping_latency(container, startup), runtime.check_ports(container, startup)]
    if options.mme:
        say("checking the multi-model API")
        results += mme.mme_checks(container, options, startup)
    else:
        say("invoking" if options.sample else "checking the payload limit")
        invocations = runtime.check_invocations(container, options, startup)
        answering = invocations[-1].verdict != FAIL
        results += invocations + [runtime.check_payload(container, options, startup, answering=answering)]
    if startup.outcome != "exited" and not container.running():
        state = container.state()
        killed = "OOM-killed" if state.get("OOMKilled") else f"exit code {state.get('ExitCode')}"
        reason = f"the container stopped during the checks ({killed}); see the failures above"
        results.append(CheckResult("idle-memory", SKIPPED, reason))
        sigterm = CheckResult("sigterm", SKIPPED, reason)
    else:
        results.append(runtime.check_memory(container, options, startup))
        say("sending SIGTERM")
        sigterm = runtime.check_sigterm(container, options, startup)
    logs = container.logs()
    head = [runtime.check_starts(startup, logs), runtime.check_ping_startup(startup, options)]
    return head + results + [runtime.check_read_only(logs, options), sigterm]
