"""The doctor gives a container the instance type's CPUs, or the host's when it has fewer."""

from __future__ import annotations

import os

from harness.doctor import DoctorOptions
from harness.doctor.container import _cpus


def test_an_instance_smaller_than_the_host_gets_its_own_cpus() -> None:
    said: list[str] = []
    assert _cpus(1, DoctorOptions(progress=said.append)) == 1
    assert said == []


def test_an_instance_larger_than_the_host_gets_the_host_and_it_is_said() -> None:
    said: list[str] = []
    host = os.cpu_count() or 1
    options = DoctorOptions(instance_type="ml.g5.48xlarge", progress=said.append)
    assert _cpus(host + 190, options) == host
    assert said == [f"ml.g5.48xlarge has {host + 190} vCPUs, this host {host}: the container gets {host}"]
