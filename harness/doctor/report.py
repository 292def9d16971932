"""What ``servekit doctor`` hands back: one verdict per check, as a table, JSON or JUnit XML."""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field
from xml.etree import ElementTree

PASS = "pass"
FAIL = "fail"
SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict (``pass``, ``fail`` or ``skipped``), why, and the fix when it failed."""

    name: str
    verdict: str
    why: str
    fix: str = ""


@dataclass
class DoctorReport:
    """Every check's result for one image."""

    image: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not fail the image)."""
        return all(check.verdict != FAIL for check in self.checks)

    def verdict_of(self, name: str) -> str:
        """The verdict of the check ``name``; KeyError when the report has no such check."""
        for check in self.checks:
            if check.name == name:
                return check.verdict
        raise KeyError(name)

    def failed(self) -> list[str]:
        """Names of the failed checks, in order."""
        return [check.name for check in self.checks if check.verdict == FAIL]

    def to_json(self) -> str:
        """``{"image", "ok", "checks": [{name, verdict, why, fix}, ...]}``."""
        return json.dumps({"image": self.image, "ok": self.ok, "checks": [asdict(c) for c in self.checks]},
                          indent=2)

    def to_junit(self) -> str:
        """JUnit XML: one testcase per check; a failed check is a <failure>, a skipped one <skipped>."""
        suite = ElementTree.Element("testsuite", name=f"servekit doctor {self.image}",
                                    tests=str(len(self.checks)), failures=str(len(self.failed())),
                                    skipped=str(sum(c.verdict == SKIPPED for c in self.checks)))
        for check in self.checks:
            case = ElementTree.SubElement(suite, "testcase", classname="servekit.doctor", name=check.name)
            if check.verdict == FAIL:
                failure = ElementTree.SubElement(case, "failure", message=check.why)
                failure.text = f"{check.why}\nfix: {check.fix}"
            elif check.verdict == SKIPPED:
                ElementTree.SubElement(case, "skipped", message=check.why)
            else:
                ElementTree.SubElement(case, "system-out").text = check.why
        return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True)

    def table(self, width: int = 100) -> str:
        """A readable table: check, verdict, why, and the fix of each failure."""
        name_w = max([len("check"), *(len(c.name) for c in self.checks)])
        lines = [f"servekit doctor {self.image}", f"{'check':<{name_w}}  verdict  why / fix"]
        text_w = max(40, width - name_w - 11)
        for check in self.checks:
            why = textwrap.wrap(check.why, text_w) or [""]
            fix = textwrap.wrap(f"fix: {check.fix}", text_w) if check.verdict == FAIL and check.fix else []
            for i, line in enumerate(why + fix):
                head = f"{check.name:<{name_w}}  {check.verdict:<7}" if i == 0 else " " * (name_w + 9)
                lines.append(f"{head}  {line}")
        summary = "OK: no check failed" if self.ok else f"FAILED: {', '.join(self.failed())}"
        lines.append(summary)
        return "\n".join(lines)
