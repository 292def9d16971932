"""Image sizes (``docker image inspect``) of servekit's images; absent images or Docker are noted."""

from __future__ import annotations

import shutil
import subprocess

from bench.run import Run

TAGS = ("latest", "latest-nomms")


def measure(run: Run) -> None:
    if shutil.which("docker") is None:
        run.results["images_note"] = "no docker client: image sizes not measured"
        return
    for framework in run.plan.frameworks:
        for tag in TAGS:
            image = f"servekit-{framework}:{tag}"
            try:
                done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                                      capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                run.results["images_note"] = "docker image inspect timed out"
                return
            if done.returncode == 0:
                run.add("images", {"image": image, "framework": framework, "bytes": int(done.stdout.strip())})
