"""Hypothesis fuzzing of the two model-archive extractors with hostile tar/gzip bytes: traversal and
absolute names, symbolic and hard links, devices and FIFOs, huge declared sizes, truncated and
corrupted streams, every compression tarfile reads.

* ``harness.artifacts.extract`` (model.tar.gz of a ModelDataUrl / MME TargetModel): the only
  exception that may come out is ``ArtifactError`` (the harness answers it as a 400 ValidationError
  for an MME, ``test_hostile_archives_are_400_through_the_mme`` checks that end to end), and nothing
  is ever written outside the target directory.
* ``handlers.submit_directory`` (a ``SAGEMAKER_SUBMIT_DIRECTORY`` ``.tar.gz``): only
  ``ModelLoadError`` (the load fails with its message), nothing written outside its cache.

Budget: ``FUZZ_EXAMPLES`` examples per test (300, derandomized, so CI is reproducible, plus the
``ALWAYS`` cases); ``SERVEKIT_RELIABILITY_LONG=1`` raises it to 5000 with random seeds. The figures
(archives tried, refused, extracted) are printed in the terminal summary.

The seven extractor bugs this fuzzing found (OSError, NUL names, EOFError, zlib/lzma errors, multi-line
messages) are fixed and each has a test below; ``KNOWN_BUGS`` lists any new one while it is open.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from handlers import submit_directory
from handlers.errors import ModelLoadError
from harness import artifacts
from harness.artifacts import ArtifactError, ArtifactLimits, Budget
from tests.reliability.conftest import ARCHIVE_REPORT, LONG

FUZZ_EXAMPLES = 5000 if LONG else 300
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Open bugs, each reproduced by a strict xfail test (none now). The fuzz tests count such an
#: exception as "known bug" (printed in the summary) and go on checking that nothing was written
#: outside; delete an entry once its bug is fixed, so the fuzzing guards against it again.
KNOWN_BUGS: dict[str, list[tuple[type[BaseException], str]]] = {
    "harness.artifacts.extract": [],
    "handlers.submit_directory": [],
}


def known_bug(extractor: str, exc: BaseException) -> bool:
    """True (and counted) when ``exc`` is one of ``extractor``'s known bugs."""
    for kind, words in KNOWN_BUGS[extractor]:
        if isinstance(exc, kind) and words in str(exc):
            ARCHIVE_REPORT[extractor][f"{kind.__name__} (known bug)"] += 1
            return True
    return False


#: Small bounds, so huge declared sizes and many members hit ArtifactLimitExceeded quickly.
LIMITS = ArtifactLimits(download_bytes=2**20, extracted_bytes=256 * 1024, files=40, seconds=30.0)

#: Replaced by the example's "outside" directory (a sibling of the target) when the archive is built,
#: so absolute names and link targets point at a place the test checks stays empty.
OUTSIDE = "{OUTSIDE}"

HOSTILE_NAMES = [
    "../escape", "../../escape", "a/../../escape", "a/b/../../../escape", "./../escape",
    f"{OUTSIDE}/absolute", "/etc/servekit-fuzz-absolute", "//double/slash", "..", ".", "./", "",
    "a\\..\\..\\escape", "..\\escape", "C:\\escape", "a/\x00/b", "a\nb", "é/ü", "a/" * 60 + "deep",
    "x" * 300, "model.joblib", "code/inference.py", "code", "a", "a/b", "a/b/c",
]
LINK_TARGETS = ["../escape", f"{OUTSIDE}/target", "/etc/passwd", "a", "model.joblib", "..", "", "a/../../x"]
KINDS = {
    "file": tarfile.REGTYPE, "old-file": tarfile.AREGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE, "contiguous": tarfile.CONTTYPE, "unknown": b"Z",
}
FORMATS: dict[str, Literal[0, 1, 2]] = {
    "ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT,
}
COMPRESSIONS = ("none", "gz", "bz2", "xz")


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    linkname: str
    declared: int  # the size the header declares
    data: bytes  # what follows it (shorter than declared: a truncated member)
    mode: int


MEMBERS = st.builds(
    Member,
    name=st.sampled_from(HOSTILE_NAMES) | st.text(max_size=20),
    kind=st.sampled_from(sorted(KINDS)) | st.just("file") | st.just("dir"),  # a third hostile
    linkname=st.sampled_from(LINK_TARGETS) | st.text(max_size=10),
    declared=st.one_of(st.integers(0, 600), st.sampled_from([2**20, 2**33, 10**12, 2**62])),
    data=st.binary(max_size=700),
    mode=st.sampled_from([0o644, 0o755, 0o4755, 0o777, 0o000, 0o7777]),
)


@dataclass(frozen=True)
class Archive:
    members: list[Member]
    tar_format: str
    compression: str
    end_marker: bool
    cut: float | None  # keep this fraction of the final bytes (a truncated download)
    flips: list[tuple[float, int]]  # (where as a fraction, new byte)


ARCHIVES = st.builds(
    Archive,
    members=st.lists(MEMBERS, max_size=6),
    tar_format=st.sampled_from(sorted(FORMATS)),
    compression=st.sampled_from(COMPRESSIONS),
    end_marker=st.booleans(),
    cut=st.none() | st.floats(0.0, 1.0),
    flips=st.just([]) | st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=3),
)


def build(archive: Archive, outside: Path) -> bytes:
    """The archive's bytes: headers as ``tarfile`` writes them, each followed by as much data as the
    member has (not as much as it declares), then optionally compressed, cut and corrupted."""
    raw = bytearray()
    for member in archive.members:
        info = tarfile.TarInfo(member.name.replace(OUTSIDE, str(outside)))
        info.type = KINDS[member.kind]
        info.linkname = member.linkname.replace(OUTSIDE, str(outside))
        info.size = member.declared
        info.mode = member.mode
        try:
            raw += info.tobuf(FORMATS[archive.tar_format], "utf-8", "surrogateescape")
        except ValueError:  # e.g. a name ustar cannot hold: write it as pax, which can
            raw += info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        body = member.data[: member.declared]
        raw += body + bytes(-len(body) % tarfile.BLOCKSIZE)
    if archive.end_marker:
        raw += bytes(2 * tarfile.BLOCKSIZE)
    data = bytes(raw)
    if archive.compression == "gz":
        data = gzip.compress(data, mtime=0)
    elif archive.compression == "bz2":
        data = bz2.compress(data)
    elif archive.compression == "xz":
        data = lzma.compress(data)
    if archive.cut is not None:
        data = data[: int(len(data) * archive.cut)]
    corrupted = bytearray(data)
    for where, value in archive.flips:
        if corrupted:
            corrupted[int(where * len(corrupted))] = value
    return bytes(corrupted)


def everything_under(root: Path) -> list[Path]:
    return [Path(dirpath) / name for dirpath, dirnames, filenames in os.walk(root)
            for name in [*dirnames, *filenames]]


def assert_contained(sandbox: Path, allowed: Path, outside: Path) -> None:
    """Only ``allowed`` (and what is under it) exists in ``sandbox``; ``outside`` and the absolute
    names the archives use stayed empty/absent; nothing under ``allowed`` is a link or a device."""
    stray = [p for p in everything_under(sandbox) if not (p == allowed or p.is_relative_to(allowed))]
    assert not stray, f"written outside the target directory: {stray}"
    assert not any(outside.iterdir()), f"written into the outside directory: {list(outside.iterdir())}"
    assert not Path("/etc/servekit-fuzz-absolute").exists()
    for path in everything_under(allowed) if allowed.exists() else []:
        assert not path.is_symlink(), f"a link was extracted: {path}"
        assert path.is_dir() or path.is_file(), f"not a regular file or directory: {path}"


def _sandbox() -> tuple[tempfile.TemporaryDirectory[str], Path, Path, Path]:
    holder = tempfile.TemporaryDirectory(prefix="servekit-fuzz-")
    root = Path(holder.name)
    (root / "in").mkdir()
    (root / "sandbox").mkdir()
    (root / "outside").mkdir()
    return holder, root / "in", root / "sandbox", root / "outside"


def _one(name: str, kind: str = "file", linkname: str = "", size: int = 0, tar_format: str = "pax",
         compression: str = "gz", cut: float | None = None) -> Archive:
    return Archive([Member(name, kind, linkname, size, b"z" * min(size, 700), 0o644)], tar_format, compression,
                   True, cut, [])


#: Cases every run tries (hypothesis's random search found some of them only in long runs).
ALWAYS = [
    _one("../escape"), _one(f"{OUTSIDE}/absolute"), _one("a/../../escape", "dir"),
    _one("model.joblib", "symlink", f"{OUTSIDE}/target"), _one("model.joblib", "hardlink", "../escape"),
    _one("dev", "chardev"), _one("pipe", "fifo"), _one("big", size=10**12), _one("big", size=600, cut=0.5),
    _one("."), _one(""), _one("\x00\x80"), _one("x" * 300), _one("x", compression="bz2", cut=0.7),
]


def always(test: Callable[[Archive], None]) -> Callable[[Archive], None]:
    """``test`` with every ``ALWAYS`` case as an explicit example."""
    for case in ALWAYS:
        test = example(archive=case)(test)
    return test


@pytest.mark.timeout(3600 if LONG else 300)
@FUZZ
@always
@given(archive=ARCHIVES)
def test_harness_extract_raises_only_artifact_error_and_writes_only_inside(archive: Archive) -> None:
    holder, incoming, sandbox, outside = _sandbox()
    with holder:
        path = incoming / "model.tar.gz"
        path.write_bytes(build(archive, outside))
        target = sandbox / "model"
        try:
            artifacts.extract(path, target, Budget(LIMITS))
            ARCHIVE_REPORT["harness.artifacts.extract"]["extracted"] += 1
        except ArtifactError as exc:
            assert str(exc), repr(exc)
            ARCHIVE_REPORT["harness.artifacts.extract"]["refused"] += 1
            if " is unsafe: " in str(exc):  # refused by a member check: before anything is written
                assert not target.exists() or not any(target.iterdir()), everything_under(target)
        except Exception as exc:
            if not known_bug("harness.artifacts.extract", exc):
                raise
        assert_contained(sandbox, target, outside)


@pytest.mark.timeout(3600 if LONG else 300)
@FUZZ
@always
@given(archive=ARCHIVES)
def test_submit_directory_archive_raises_only_model_load_error(archive: Archive) -> None:
    holder, incoming, sandbox, outside = _sandbox()
    with holder:
        path = incoming / "sourcedir.tar.gz"
        path.write_bytes(build(archive, outside))
        cache = sandbox / "servekit-code"
        with mock.patch.object(submit_directory, "cache_root", return_value=cache):
            try:
                code_dir = submit_directory.resolve_code_dir(sandbox, str(path))
                assert code_dir.is_relative_to(cache)
                ARCHIVE_REPORT["handlers.submit_directory"]["extracted"] += 1
            except ModelLoadError as exc:
                assert exc.message, repr(exc)
                ARCHIVE_REPORT["handlers.submit_directory"]["refused"] += 1
            except Exception as exc:
                if not known_bug("handlers.submit_directory", exc):
                    raise
        assert_contained(sandbox, cache, outside)


def _truncated_gzip(path: Path) -> Path:
    data = gzip.compress(bytes(10 * tarfile.BLOCKSIZE), mtime=0)
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_gzip_sourcedir_is_a_model_load_error(tmp_path: Path) -> None:
    archive = _truncated_gzip(tmp_path / "sourcedir.tar.gz")
    with mock.patch.object(submit_directory, "cache_root", return_value=tmp_path / "cache"):
        with pytest.raises(ModelLoadError, match="SAGEMAKER_SUBMIT_DIRECTORY"):
            submit_directory.resolve_code_dir(tmp_path, str(archive))


def _single_member_tar(path: Path, name: str) -> Path:
    """An uncompressed tar holding one empty regular file called ``name`` (pax, so any name fits)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("name", [".", "./", "", "a/.", "x" * 300], ids=[".", "./", "empty", "a/.", "300 bytes"])
def test_unwritable_member_names_are_an_artifact_error(tmp_path: Path, name: str) -> None:
    archive = _single_member_tar(tmp_path / "model.tar.gz", name)
    with pytest.raises(ArtifactError):
        artifacts.extract(archive, tmp_path / "model")


@pytest.mark.parametrize("extractor", ["harness", "submit_directory"])
def test_a_member_name_with_nul_is_refused(tmp_path: Path, extractor: str) -> None:
    archive = _single_member_tar(tmp_path / "model.tar.gz", "\x00\x80")
    if extractor == "harness":
        with pytest.raises(ArtifactError):
            artifacts.extract(archive, tmp_path / "model")
    else:
        with mock.patch.object(submit_directory, "cache_root", return_value=tmp_path / "cache"), \
                pytest.raises(ModelLoadError):
            submit_directory.resolve_code_dir(tmp_path, str(archive))


def _flipped_streams(compression: str, count: int) -> list[bytes]:
    """A small tar (6 members of 3000 seeded random bytes), compressed, then ``count`` copies each
    with one byte inverted at a seeded position: corrupted downloads."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(6):
            data = random.Random(index).randbytes(3000)
            info = tarfile.TarInfo(f"f{index}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    compress = {"gz": lambda b: gzip.compress(b, mtime=0), "xz": lzma.compress, "bz2": bz2.compress}[compression]
    clean = compress(out.getvalue())
    rng = random.Random(1)
    streams = []
    for _ in range(count):
        corrupted = bytearray(clean)
        corrupted[rng.randrange(20, len(clean) - 20)] ^= 0xFF
        streams.append(bytes(corrupted))
    return streams


@pytest.mark.parametrize("extractor,compression", [
    ("harness", "gz"),
    ("harness", "xz"),
    ("harness", "bz2"),
    ("submit_directory", "gz"),
    ("submit_directory", "xz"),
    ("submit_directory", "bz2"),
])
def test_corrupted_compressed_streams_are_typed_errors(tmp_path: Path, extractor: str, compression: str) -> None:
    for number, stream in enumerate(_flipped_streams(compression, 150)):
        archive = tmp_path / f"{number}.tar.gz"
        archive.write_bytes(stream)
        try:
            if extractor == "harness":
                artifacts.extract(archive, tmp_path / f"model-{number}")
            else:
                with mock.patch.object(submit_directory, "cache_root", return_value=tmp_path / "cache"):
                    submit_directory.resolve_code_dir(tmp_path, str(archive))
        except (ArtifactError, ModelLoadError):
            pass


def test_an_unreadable_archive_is_refused_in_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"not a tar archive")
    with pytest.raises(ArtifactError) as caught:
        artifacts.extract(archive, tmp_path / "model")
    assert "\n" not in str(caught.value), str(caught.value)


# -- end to end: a hostile TargetModel archive is a 400 from the harness, and the endpoint serves on ------

def _tar(members: list[Member], compression: str = "gz", cut: float | None = None) -> bytes:
    archive = Archive(members, "pax", compression, True, cut, [])
    return build(archive, Path("/nonexistent-outside"))


HOSTILE_ARCHIVES = {
    "traversal": _tar([Member("../escape", "file", "", 3, b"bad", 0o644)]),
    "absolute": _tar([Member("/tmp/servekit-escape", "file", "", 3, b"bad", 0o644)]),
    "symlink": _tar([Member("model.joblib", "symlink", "/etc/passwd", 0, b"", 0o777)]),
    "hardlink": _tar([Member("model.joblib", "hardlink", "../../etc/passwd", 0, b"", 0o644)]),
    "device": _tar([Member("dev", "chardev", "", 0, b"", 0o644)]),
    "fifo": _tar([Member("pipe", "fifo", "", 0, b"", 0o644)]),
    "huge declared size": _tar([Member("model.joblib", "file", "", 10**12, b"x" * 600, 0o644)]),
    "truncated gzip": _tar([Member("model.joblib", "file", "", 600, b"y" * 600, 0o644)], cut=0.5),
    "not an archive": b"this is not a tar.gz at all",
    "empty": b"",
}


def _invoke_archives(tmp_path: Path, archives: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    """Each archive as an MME TargetModel of the harness (a fake container behind it): the HTTP status
    and error code boto3 parsed, then a good archive, which must still be served."""
    from harness.backends.process import ProcessBackend
    from harness.local import LocalSageMaker
    from tests.harness.conftest import FAKE_CONTAINER, IMAGE, boto_clients, deploy, make_tar

    models = tmp_path / "models"
    models.mkdir()
    for name, data in archives.items():
        (models / f"{name.replace(' ', '-')}.tar.gz").write_bytes(data)
    make_tar(models / "ok.tar.gz", {"model.txt": b"inside"})
    backend = ProcessBackend(command=[sys.executable, str(FAKE_CONTAINER)])
    outcomes = {}
    with LocalSageMaker(backend, state_dir=tmp_path / "state", startup_timeout_s=30, stop_grace_s=5) as running:
        sm, rt = boto_clients(running.endpoint_url, retries={"max_attempts": 0})
        deploy(sm, "mme", PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel",
                                            "ModelDataUrl": f"file://{models}/"})
        for name in archives:
            try:
                rt.invoke_endpoint(EndpointName="mme", TargetModel=f"{name.replace(' ', '-')}.tar.gz", Body=b"{}")
                outcomes[name] = (200, "")
            except rt.exceptions.ClientError as exc:
                error = exc.response["Error"]
                outcomes[name] = (exc.response["ResponseMetadata"]["HTTPStatusCode"],
                                  f"{error['Code']}: {error['Message']}")
        answer = rt.invoke_endpoint(EndpointName="mme", TargetModel="ok.tar.gz", Body=b"{}")
        assert "model.txt" in answer["Body"].read().decode()
    return outcomes


def test_hostile_archives_are_400_through_the_mme(tmp_path: Path) -> None:
    outcomes = _invoke_archives(tmp_path, HOSTILE_ARCHIVES)
    for name, (status, error) in outcomes.items():
        assert status == 400 and error.startswith("ValidationError: Cannot use model artifact"), (name, error)
    assert not Path("/tmp/servekit-escape").exists()
    assert not (tmp_path / "escape").exists()


def test_archives_that_crash_the_extractor_are_400_through_the_mme(tmp_path: Path) -> None:
    crashing = {"dot": _tar([Member(".", "file", "", 0, b"", 0o644)]),
                "long name": _tar([Member("x" * 300, "file", "", 0, b"", 0o644)]),
                "nul": _tar([Member("\x00\x80", "file", "", 0, b"", 0o644)])}
    outcomes = _invoke_archives(tmp_path, crashing)
    assert all(status == 400 for status, _ in outcomes.values()), outcomes


def test_profile_budget_is_what_ci_expects() -> None:
    assert FUZZ.max_examples == (5000 if LONG else 300)
