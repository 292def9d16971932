"""Install an image's Python dependencies for another architecture on this machine.

``python prebuilt_venv.py --arch arm64 --requirements FILE --wheels DIR --out TAR``

Emulated, ``pip install`` inside an arm64 ``docker build`` spends minutes running pip itself
through QEMU: resolving, unpacking and byte-compiling thousands of files (docs/images.md). None of
that depends on the architecture; only the wheels do. So this runs the host's pip with
``--platform``/``--only-binary`` for the target and writes the result as a tar that
Dockerfile.sklearn's ``deps-prebuilt`` stage adds on top of ``python3 -m venv --without-pip``.

Three things make that equal to what pip would install inside the image, or refuse in one line:

* versions: resolved first for this machine (what the amd64 image installs), then required
  exactly for the target, so a release without a wheel for the target fails instead of pip
  silently taking an older one (``--platform manylinux2014_aarch64`` alone does that);
* markers: pip evaluates environment markers for the host even with ``--platform``
  (https://github.com/pypa/pip/issues/10050), so a requirement whose marker depends on the
  machine is refused;
* layout: ``--target`` writes console scripts with this machine's interpreter and RECORD paths for
  its own tree; both are rewritten for ``/opt/venv``.

The tar is the same bytes for the same pins, so the image's ``ADD`` layer stays cached from one
build to the next: every file gets one fixed modification time before the ``.pyc`` files, which
record it, are compiled here with the paths they have in the image (pip's own byte-compiling would
record the time of unpacking and this machine's temporary directory).

pip and setuptools come from ``--wheels``: the base image's ``/usr/share/python-wheels``, which is
what ``python3 -m venv`` installs there. The host interpreter must be CPython 3.11 like the image's,
because the .pyc files are compiled with it.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import csv
import hashlib
import io
import json
import os
import py_compile
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

VENV = "/opt/venv"
#: The venv's bin/ as RECORD names it, relative to site-packages.
SCRIPTS_FROM_SITE = "../../../bin/"
PYTHON_VERSION = "3.11"
# pip takes --platform literally: every manylinux tag the target's glibc (Debian bookworm: 2.36) runs.
GLIBC_MINORS = range(17, 37)
WHEEL_MACHINE = {"arm64": "aarch64", "amd64": "x86_64"}
# Markers whose value differs between this machine and the target (PEP 508 environment markers).
MACHINE_MARKERS = ("platform_machine", "platform_release", "platform_version", "python_full_version")


class Refused(Exception):
    """The dependencies cannot be installed for the target here; the message says why."""


def platform_args(arch: str) -> list[str]:
    """pip's --platform options for a manylinux wheel of ``arch``."""
    machine = WHEEL_MACHINE[arch]
    tags = [f"manylinux2014_{machine}"] + [f"manylinux_2_{minor}_{machine}" for minor in GLIBC_MINORS]
    args = [arg for tag in tags for arg in ("--platform", tag)]
    return args + ["--implementation", "cp", "--python-version", PYTHON_VERSION, "--abi", "cp311"]


def refuse_machine_markers(lines: list[str], where: str) -> None:
    """Refuse a requirement whose marker pip would evaluate for this machine, not the target."""
    for line in lines:
        _, _, marker = line.partition(";")
        if any(name in marker for name in MACHINE_MARKERS):
            raise Refused(f"{line.strip()!r} ({where}) depends on the machine, which pip evaluates for this host")


def pip(*args: str) -> None:
    """Run the host's pip; its own error output says which requirement failed."""
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    if subprocess.run(command, check=False).returncode:
        raise Refused(f"pip {args[0]} failed (see above)")


def resolve_here(requirements: Path, work: Path) -> list[dict[str, object]]:
    """The distributions pip picks for this machine: what the image of this machine installs."""
    report = work / "report.json"
    pip("install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report), "-r", str(requirements))
    installed = json.loads(report.read_text())["install"]
    return [item["metadata"] for item in installed]


def pins(resolved: list[dict[str, object]]) -> list[str]:
    """``name==version`` for every resolved distribution."""
    return [f"{meta['name']}=={meta['version']}" for meta in resolved]


def install_for(arch: str, requirements: list[str], wheels: list[Path], site: Path) -> None:
    """Install exactly ``requirements`` (pins) plus the base's pip/setuptools wheels for ``arch``."""
    pip(
        "install", "--quiet", "--only-binary=:all:", "--no-deps", "--no-compile", "--target", str(site),
        *platform_args(arch), *requirements, *map(str, wheels),
    )  # fmt: skip


def fix_scripts(site: Path, bin_dir: Path) -> None:
    """Move --target's console scripts to the venv's bin/ and point them at the venv's python."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for script in sorted((site / "bin").iterdir()):
        text = script.read_bytes()
        if text.startswith(b"#!"):
            first, _, rest = text.partition(b"\n")
            if b"python" in first:
                text = f"#!{VENV}/bin/python3".encode() + b"\n" + rest
        target = bin_dir / script.name
        target.write_bytes(text)
        os.chmod(target, 0o755)
        script.unlink()
    (site / "bin").rmdir()
    # RECORD lists scripts relative to site-packages: ../../bin from --target's tree, ../../../bin in a venv.
    for record in site.glob("*.dist-info/RECORD"):
        record.write_text(re.sub(r"^\.\./\.\./bin/", SCRIPTS_FROM_SITE, record.read_text(), flags=re.M))


def match_pip_metadata(site: Path, requested: list[str], wheels: list[Path]) -> None:
    """The metadata pip writes inside the image: REQUESTED only for what the list names and for
    pip/setuptools (ensurepip asks for them), no direct_url.json for those two (not from a URL)."""
    from_base = {canonical(wheel.name.split("-", 1)[0]) for wheel in wheels}
    named = {canonical(re.split(r"[\s;<>=!~\[]", line, maxsplit=1)[0]) for line in requested} | from_base
    for dist_info in site.glob("*.dist-info"):
        name = canonical(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        if name not in named:
            (dist_info / "REQUESTED").unlink(missing_ok=True)
            _drop_record_line(dist_info, "REQUESTED")
        if name in from_base:
            (dist_info / "direct_url.json").unlink(missing_ok=True)
            _drop_record_line(dist_info, "direct_url.json")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _drop_record_line(dist_info: Path, filename: str) -> None:
    record = dist_info / "RECORD"
    suffix = f"{dist_info.name}/{filename},"
    record.write_text("".join(line for line in record.read_text().splitlines(True) if not line.startswith(suffix)))


def refuse_host_paths(root: Path) -> None:
    """No script may still name this machine's interpreter."""
    host = sys.prefix.encode()
    for script in (root / "bin").iterdir():
        if script.is_file() and host in script.read_bytes()[:512]:
            raise Refused(f"{script.name} still names this machine's interpreter ({sys.prefix})")


def set_times(root: Path, epoch: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def compile_as_pip(root: Path, site: Path, epoch: int) -> None:
    """Byte-compile every .py as pip does after installing (a file that does not compile is left
    without a .pyc, as pip leaves it), recording ``epoch`` as each source's time and the file's path
    under /opt/venv; then write each RECORD as pip writes it in the image."""
    set_times(root, epoch)
    compileall.compile_dir(root, ddir=VENV, quiet=2, workers=0, optimize=0,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    set_times(root, epoch)  # the directories that gained a __pycache__, and the .pyc files
    for record in site.glob("*.dist-info/RECORD"):
        record.write_bytes(pip_record(record.read_bytes(), site))
        os.utime(record, (epoch, epoch))


def pip_record(record: bytes, site: Path) -> bytes:
    """RECORD's rows as pip writes them in the image: the scripts' hashes and sizes as rewritten for
    /opt/venv, one ``path.pyc,,`` row for each listed .py compiled, sorted, CSV with CRLF."""
    rows = [tuple(row) for row in csv.reader(io.StringIO(record.decode("utf-8"))) if row]
    listed = {row[0] for row in rows}
    written = []
    for path, *rest in rows:
        if path.startswith(SCRIPTS_FROM_SITE) and rest and rest[0]:
            rest = list(file_hash(site / path))
        written.append((path, *rest))
        source = PurePosixPath(path)
        compiled = str(source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc")
        if source.suffix == ".py" and compiled not in listed and (site / compiled).is_file():
            listed.add(compiled)
            written.append((compiled, "", ""))
    out = io.StringIO()
    csv.writer(out).writerows(sorted(written))
    return out.getvalue().encode("utf-8")


def file_hash(path: Path) -> tuple[str, str]:
    """RECORD's hash and size fields of a file (PEP 376: urlsafe base64 without padding)."""
    data = path.read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}", str(len(data))


def write_tar(root: Path, out: Path, epoch: int) -> None:
    """The venv's lib/ and bin/ as a tar owned by root (the Dockerfile ADDs it onto /opt/venv), its
    members in name order with one modification time: the same files make the same bytes."""

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = epoch
        if info.isreg() or info.isdir():  # the host's umask out of it
            info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    with tarfile.open(out, "w") as tar:
        for name in ("lib", "bin"):
            tar.add(root / name, arcname=name, filter=as_root)


def build(arch: str, requirements: Path, wheels_dir: Path, out: Path, epoch: int) -> list[str]:
    """Make ``out``, every file's time ``epoch``; returns the pins installed."""
    if sys.implementation.name != "cpython" or f"{sys.version_info[0]}.{sys.version_info[1]}" != PYTHON_VERSION:
        here = sys.version.split()[0]
        raise Refused(f"this is Python {here}; the image's is {PYTHON_VERSION}: its .pyc files would not load")
    if sys.pycache_prefix:
        raise Refused("PYTHONPYCACHEPREFIX (or -X pycache_prefix) is set here: the .pyc files would be "
                      "written outside the venv")
    lines = [line for line in requirements.read_text().splitlines() if line.strip()]
    refuse_machine_markers(lines, str(requirements))
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise Refused(f"no pip/setuptools wheels in {wheels_dir} (the base's /usr/share/python-wheels)")
    with tempfile.TemporaryDirectory(prefix="servekit-cross-") as tmp:
        work = Path(tmp)
        resolved = resolve_here(requirements, work)
        for meta in resolved:
            requires = meta.get("requires_dist")
            listed = [str(item) for item in requires] if isinstance(requires, list) else []
            refuse_machine_markers(listed, f"required by {meta['name']}")
        exact = pins(resolved)
        root = work / "venv"
        site = root / "lib" / f"python{PYTHON_VERSION}" / "site-packages"
        install_for(arch, exact, wheels, site)
        fix_scripts(site, root / "bin")
        match_pip_metadata(site, lines, wheels)
        refuse_host_paths(root)
        compile_as_pip(root, site, epoch)
        write_tar(root, out, epoch)
    return exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", required=True, choices=sorted(WHEEL_MACHINE))
    parser.add_argument("--requirements", required=True, type=Path)
    parser.add_argument("--wheels", required=True, type=Path, help="the base image's /usr/share/python-wheels")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--epoch", required=True, type=int,
                        help="every file's modification time, in seconds (SOURCE_DATE_EPOCH, "
                             "https://reproducible-builds.org/specs/source-date-epoch/)")
    args = parser.parse_args()
    try:
        exact = build(args.arch, args.requirements, args.wheels, args.out, args.epoch)
    except Refused as refused:
        raise SystemExit(f"prebuilt venv for linux/{args.arch}: {refused}") from None
    print(f"prebuilt venv for linux/{args.arch}: {len(exact)} distributions: {' '.join(exact)}", file=sys.stderr)


if __name__ == "__main__":
    main()
