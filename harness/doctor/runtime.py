"""Run-time checks of a single-model (or MME) container: start-up, /ping, ports, invocations, payload,
memory, the read-only model directory, SIGTERM."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from harness.doctor import facts
from harness.doctor.container import DoctorContainer
from harness.doctor.options import DoctorOptions
from harness.doctor.probe import PROBE_TIMEOUT_S, Answer, request
from harness.doctor.report import FAIL, PASS, SKIPPED, CheckResult
from harness.instance_types import limits_for

#: Poll interval of every wait below (each wait also has a deadline).
POLL_S = 0.25
#: A container that listens outside its ports this long without answering /ping on its own port is
#: declared to ignore SAGEMAKER_BIND_TO_PORT.
PORT_SETTLE_S = 5.0
#: /ping requests sent once ready, on top of the start-up ones, to measure its latency.
EXTRA_PINGS = 3
#: Idle memory above this share of the instance leaves no room for requests (servekit's threshold).
IDLE_MEMORY_SHARE = 0.9
#: What a failed write into the read-only mount logs (EROFS), in Python, Java, C and shells.
_READ_ONLY = ("Read-only file system", "EROFS")


@dataclass
class Startup:
    """How the start-up wait ended: "ready", "exited", "wrong-port" or "timeout"."""

    outcome: str
    seconds: float
    pings: list[Answer] = field(default_factory=list)
    foreign_ports: set[int] = field(default_factory=set)
    state: dict[str, object] = field(default_factory=dict)


def _outside(container: DoctorContainer, ports: set[int]) -> set[int]:
    low, high = container.safe_range
    return {p for p in ports if p != container.port and not low <= p <= high}


def wait_startup(container: DoctorContainer, options: DoctorOptions) -> Startup:
    """Poll /ping until 200, the container exits, it settles on a foreign port, or the window ends."""
    started = time.monotonic()
    pings: list[Answer] = []
    foreign_since: float | None = None
    while (elapsed := time.monotonic() - started) < options.startup_timeout_s:
        answer = request("GET", container.url + "/ping")
        pings.append(answer)
        if answer.status == 200:
            return Startup("ready", elapsed, pings)
        state = container.state()
        if not state.get("Running"):
            return Startup("exited", elapsed, pings, state=state)
        listening = container.listening_ports()
        foreign = _outside(container, listening)
        if foreign and container.port not in listening:
            foreign_since = foreign_since or time.monotonic()
            if time.monotonic() - foreign_since >= PORT_SETTLE_S:
                return Startup("wrong-port", elapsed, pings, foreign)
        time.sleep(POLL_S)
    return Startup("timeout", options.startup_timeout_s, pings)


def read_only_write(logs: str) -> str | None:
    """The first log line reporting a refused write under /opt/ml/model(s), if any."""
    for line in logs.splitlines():
        if "/opt/ml/model" in line and any(mark in line for mark in _READ_ONLY):
            return line.strip()[:300]
    return None


def check_starts(startup: Startup, logs: str) -> CheckResult:
    if startup.outcome != "exited":
        return CheckResult("starts", PASS, f"container kept running ({startup.outcome} after {startup.seconds:.1f} s)")
    if read_only_write(logs):
        return CheckResult("starts", SKIPPED, "it exited because of a write into /opt/ml/model (see read-only-model)")
    state = startup.state
    why = "OOM-killed (memory above the instance's)" if state.get("OOMKilled") else f"exit code {state.get('ExitCode')}"
    tail = " | ".join(logs.strip().splitlines()[-3:])[:400]
    return CheckResult("starts", FAIL, f"the container exited at start ({why}) after {startup.seconds:.1f} s, "
                       f"before /ping answered 200; {facts.PING_FAILURE}; last log lines: {tail}",
                       "run `docker run IMAGE serve` locally and fix what its log says; `serve` must start the "
                       "server in the foreground and keep running")


def check_ping_startup(startup: Startup, options: DoctorOptions) -> CheckResult:
    if startup.outcome == "ready":
        return CheckResult("ping-startup", PASS, f"/ping answered 200 after {startup.seconds:.1f} s "
                           f"(window {options.startup_timeout_s:.0f} s)")
    if startup.outcome in ("exited", "wrong-port"):
        see = "starts" if startup.outcome == "exited" else "ports"
        return CheckResult("ping-startup", SKIPPED, f"no server on SAGEMAKER_BIND_TO_PORT to ping (see {see})")
    last = startup.pings[-1].describe() if startup.pings else "no attempt"
    return CheckResult("ping-startup", FAIL, f"/ping did not answer 200 within {options.startup_timeout_s:.0f} s "
                       f"(last: {last}); {facts.PING_FAILURE}",
                       "answer GET /ping with 200 once the model is loaded; if loading takes longer, set "
                       "ContainerStartupHealthCheckTimeoutInSeconds (up to 3600) and --startup-timeout")


def check_ping_latency(container: DoctorContainer, startup: Startup) -> CheckResult:
    if startup.outcome != "ready":
        return CheckResult("ping-latency", SKIPPED, "the server never answered /ping 200")
    pings = [a for a in startup.pings if a.status is not None or a.seconds >= PROBE_TIMEOUT_S]
    pings += [request("GET", container.url + "/ping") for _ in range(EXTRA_PINGS)]
    slowest = max(pings, key=lambda a: a.seconds)
    if slowest.seconds <= facts.PING_TIMEOUT_S and all(a.status == 200 for a in pings[-EXTRA_PINGS:]):
        return CheckResult("ping-latency", PASS, f"{len(pings)} /ping answers, slowest {slowest.seconds:.2f} s "
                           f"(limit {facts.PING_TIMEOUT_S:g} s)")
    return CheckResult("ping-latency", FAIL, f"/ping took {slowest.seconds:.2f} s ({slowest.describe()}); SageMaker "
                       f"gives each /ping {facts.PING_TIMEOUT_S:g} s (contract §1.3): {facts.PING_FAILURE}",
                       "answer /ping from memory (a flag set once the model loaded), never by running the model "
                       "or calling out; keep it off the inference worker's queue")


def check_ports(container: DoctorContainer, startup: Startup) -> CheckResult:
    low, high = container.safe_range
    given = f"SAGEMAKER_BIND_TO_PORT={container.port}, SAGEMAKER_SAFE_PORT_RANGE={low}-{high}"
    fix = ("listen on $SAGEMAKER_BIND_TO_PORT (8080 only when it is unset) and take any other port from "
           "$SAGEMAKER_SAFE_PORT_RANGE")
    if startup.outcome == "wrong-port":
        return CheckResult("ports", FAIL, f"given {given}, the container listens on {sorted(startup.foreign_ports)} "
                           f"and not on {container.port}; {facts.PING_FAILURE} (contract §1.7, §3.2)", fix)
    if startup.outcome != "ready":
        return CheckResult("ports", SKIPPED, "the server never answered /ping 200")
    listening = container.listening_ports()
    if container.port not in listening:
        return CheckResult("ports", SKIPPED, f"/ping answered on {container.port} but the container's sockets read "
                           f"from /proc show {sorted(listening)}: run the doctor as root to map them")
    foreign = _outside(container, listening)
    if foreign:
        return CheckResult("ports", FAIL, f"given {given}, the container also listens on {sorted(foreign)}: in a "
                           "multi-container endpoint or pipeline that port may belong to another container "
                           "(contract §3.2)", fix)
    return CheckResult("ports", PASS, f"listens on {sorted(listening)}; {given}")


def _invoke_path(options: DoctorOptions, model: str) -> str:
    return f"/models/{model}/invoke" if options.mme else "/invocations"


def invoke(container: DoctorContainer, options: DoctorOptions, model: str = "") -> Answer:
    """The --sample request, answered within SageMaker's 60 s."""
    assert options.sample is not None
    content_type, body = options.sample
    return request("POST", container.url + _invoke_path(options, model), content=body,
                   headers={"Content-Type": content_type}, timeout=options.invocation_timeout_s)


def check_invocations(container: DoctorContainer, options: DoctorOptions, startup: Startup) -> list[CheckResult]:
    """ready-means-ready (the first invocation after /ping 200) and model-loads (any within the window)."""
    if startup.outcome != "ready" or options.sample is None or options.mme:
        why = ("the server never answered /ping 200" if startup.outcome != "ready" else
               "no --sample given" if options.sample is None else "MME: see mme-load-invoke-unload")
        return [CheckResult("ready-means-ready", SKIPPED, why), CheckResult("model-loads", SKIPPED, why)]
    deadline = time.monotonic() + options.load_window_s
    first = invoke(container, options)
    later = first
    while not later.ok() and time.monotonic() < deadline and container.running():
        time.sleep(POLL_S)
        later = invoke(container, options)
    return [_ready_verdict(first, later), _loads_verdict(later, options)]


def _error_message(answer: Answer) -> str:
    if answer.status is None:
        return "InvokeEndpoint fails after 60 s: \"Received server error (0) from primary ...\" (issue 22)"
    kind = "client" if answer.status < 500 else "server"
    return facts.MODEL_ERROR.format(kind=kind, status=answer.status)


def _ready_verdict(first: Answer, later: Answer) -> CheckResult:
    if first.ok():
        return CheckResult("ready-means-ready", PASS, f"first invocation after /ping 200: {first.describe()}")
    if not later.ok():
        return CheckResult("ready-means-ready", SKIPPED, "no invocation succeeded at all (see model-loads)")
    return CheckResult("ready-means-ready", FAIL,
                       f"/ping said 200 but the first invocation got {first.describe()}; a later one succeeded: "
                       f"the container reports ready before its model is. Every instance that scales out "
                       f"fails its first requests: {_error_message(first)}",
                       "answer /ping 200 only once the model is loaded and a request would succeed "
                       "(load before listening, or keep /ping at 503 until then)")


def _loads_verdict(later: Answer, options: DoctorOptions) -> CheckResult:
    if later.ok():
        return CheckResult("model-loads", PASS, f"sample invocation: {later.describe()}")
    return CheckResult("model-loads", FAIL,
                       f"/ping says 200 but no sample invocation succeeded within {options.load_window_s:.0f} s "
                       f"(last: {later.describe()}); the endpoint goes InService and every request fails: "
                       f"{_error_message(later)}",
                       "make the model load (see the container log for the handler's error) and answer /ping "
                       "200 only when it has; /ping must reflect the model, not just the web server")


def check_payload(container: DoctorContainer, options: DoctorOptions, startup: Startup, model: str = "",
                  answering: bool = True) -> CheckResult:
    """A body of exactly 6 MiB must not be refused as too large (413, or the connection cut);
    ``answering`` False: the sample never succeeded, so a missing answer would say nothing of size."""
    if startup.outcome != "ready":
        return CheckResult("payload-6mb", SKIPPED, "the server never answered /ping 200")
    if not answering:
        return CheckResult("payload-6mb", SKIPPED, "no sample invocation succeeded (see model-loads)")
    if options.mme and not model:
        return CheckResult("payload-6mb", SKIPPED, "MME without a loaded model (give --model-data)")
    content_type, body = options.sample or ("application/octet-stream", b"")
    # The sample padded with spaces (still valid JSON; other types may be refused as malformed, which passes).
    padded = body + b" " * (facts.MAX_PAYLOAD_BYTES - len(body))
    answer = request("POST", container.url + _invoke_path(options, model), content=padded,
                     headers={"Content-Type": content_type}, timeout=options.invocation_timeout_s)
    if answer.status is not None and answer.status != 413:
        return CheckResult("payload-6mb", PASS, f"a {facts.MAX_PAYLOAD_BYTES}-byte {content_type} body was read and "
                           f"answered {answer.status} (not refused as too large)")
    return CheckResult("payload-6mb", FAIL,
                       f"a {facts.MAX_PAYLOAD_BYTES}-byte body (SageMaker's 6 MB limit, contract §1.5) got "
                       f"{answer.describe()}: requests SageMaker accepts are refused by the server: "
                       f"{_error_message(answer)}",
                       "raise the server's body limit to at least 6 MiB (multi-model-server: max_request_size; "
                       "sagemaker-inference: SAGEMAKER_MAX_PAYLOAD_IN_MB=6; nginx: client_max_body_size 6m)")


def check_memory(container: DoctorContainer, options: DoctorOptions, startup: Startup) -> CheckResult:
    if startup.outcome != "ready":
        return CheckResult("idle-memory", SKIPPED, "the server never answered /ping 200")
    used = container.memory_bytes()
    if used is None:
        return CheckResult("idle-memory", SKIPPED, "this host does not show the container's cgroup memory")
    limit = limits_for(options.instance_type).memory_mib * 2**20
    share = used / limit
    text = f"{used / 2**20:.0f} MiB idle of {limit / 2**20:.0f} MiB on {options.instance_type} ({share:.0%})"
    if share <= IDLE_MEMORY_SHARE:
        return CheckResult("idle-memory", PASS, text)
    return CheckResult("idle-memory", FAIL, f"{text}: the first requests' allocations get the container OOM-killed; "
                       "SageMaker replaces the instance and requests fail meanwhile",
                       "choose an instance type with more memory or fewer workers (SAGEMAKER_MODEL_SERVER_WORKERS)")


def check_read_only(logs: str, options: DoctorOptions) -> CheckResult:
    line = read_only_write(logs)
    mount = "/opt/ml/models" if options.mme else "/opt/ml/model"
    if line is None:
        return CheckResult("read-only-model", PASS, f"no refused write into {mount} in the container log "
                           "(a write whose error is swallowed unlogged is not seen)")
    return CheckResult("read-only-model", FAIL,
                       f"the container wrote into {mount}, which SageMaker mounts read-only (contract §1.9): "
                       f"{line}; on SageMaker this fails the same way, then {facts.PING_FAILURE}",
                       "write caches, compiled models and extracted files under /tmp (or a directory of the "
                       "image), never under /opt/ml/model")


def check_sigterm(container: DoctorContainer, options: DoctorOptions, startup: Startup) -> CheckResult:
    if startup.outcome == "exited":
        return CheckResult("sigterm", SKIPPED, "the container had already exited (see starts)")
    container.pids()  # remember every process, to see that none outlives the container
    subprocess.run(["docker", "kill", "--signal", "TERM", container.id], capture_output=True, timeout=60, check=False)
    started = time.monotonic()
    while container.running() and time.monotonic() - started < options.stop_grace_s:
        time.sleep(POLL_S)
    elapsed = time.monotonic() - started
    if container.running():
        subprocess.run(["docker", "kill", container.id], capture_output=True, timeout=60, check=False)
        return CheckResult("sigterm", FAIL, f"still running {options.stop_grace_s:g} s after SIGTERM: SageMaker "
                           "SIGKILLs it 30 s after SIGTERM (contract §1.1), cutting in-flight requests and "
                           "slowing every UpdateEndpoint and scale-in",
                           "make PID 1 the server (exec-form ENTRYPOINT, `exec` in start scripts) and stop on "
                           "SIGTERM: finish in-flight requests, stop workers, exit")
    code = container.state().get("ExitCode")
    left = container.leftover_processes()
    if left:
        return CheckResult("sigterm", FAIL, f"exited in {elapsed:.1f} s but processes {left} still run",
                           "stop every child process on SIGTERM")
    return CheckResult("sigterm", PASS,
                       f"exited {elapsed:.1f} s after SIGTERM (exit code {code}), nothing left running")

