"""Read Wapiti's JSON report: list every finding, fail on medium or worse unless accepted.

    python security/wapiti_gate.py REPORT.json ACCEPTED.txt

ACCEPTED.txt lists findings judged false positives, one a line, as
`CATEGORY | METHOD PATH | reason` (PATH may end in `*`); a line without a reason is an error.
Exits 1 if a finding of level 2 (medium) or more is not accepted, 2 if the files are unusable.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import dataclass
from pathlib import Path

LEVELS = {0: "info", 1: "low", 2: "medium", 3: "high", 4: "critical"}
FAILING_LEVEL = 2


@dataclass(frozen=True)
class Accepted:
    category: str
    method: str
    path: str
    reason: str

    def covers(self, category: str, method: str, path: str) -> bool:
        return (
            self.category.lower() == category.lower()
            and self.method.upper() == method.upper()
            and fnmatch.fnmatchcase(path, self.path)
        )


def read_accepted(path: Path) -> list[Accepted]:
    accepted = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("|")]
        target = fields[1].split(None, 1) if len(fields) == 3 else []
        if len(fields) != 3 or len(target) != 2 or not fields[2]:
            raise ValueError(f"{path}:{number}: not `CATEGORY | METHOD PATH | reason`: {line}")
        accepted.append(Accepted(fields[0], target[0], target[1], fields[2]))
    return accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("accepted", type=Path)
    args = parser.parse_args(argv)
    try:
        report = json.loads(args.report.read_text())
        accepted = read_accepted(args.accepted)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"wapiti gate: {exc}\n")
        return 2
    counts: dict[str, int] = {}
    failing = 0
    # One line per category, target and parameter: Wapiti reports each payload that worked.
    lines: dict[tuple[str, str, str, str], list[str | int]] = {}
    for section in ("vulnerabilities", "anomalies", "additionals"):
        for category, findings in sorted(report.get(section, {}).items()):
            for finding in findings:
                level = int(finding.get("level", 0))
                name = LEVELS.get(level, str(level))
                counts[name] = counts.get(name, 0) + 1
                method, path = finding.get("method", "?"), finding.get("path", "?")
                parameter = finding.get("parameter") or ""
                why = next((a for a in accepted if a.covers(category, method, path)), None)
                if why is not None:
                    verdict = f"accepted: {why.reason}"
                elif level >= FAILING_LEVEL:
                    verdict, failing = "NOT ACCEPTED", failing + 1
                else:
                    verdict = "below medium"
                where = f"{method} {path}" + (f" [{parameter}]" if parameter else "")
                key = (name, category, where, verdict)
                if key in lines:
                    lines[key][0] = int(lines[key][0]) + 1
                else:
                    lines[key] = [1, " ".join(str(finding.get("info", "")).split())[:300]]
    out = sys.stdout
    for (name, category, where, verdict), (times, info) in lines.items():
        repeated = f" x{times}" if int(times) > 1 else ""
        out.write(f"  {name:8} {category}: {where}{repeated} ({verdict})\n           {info}\n")
    order = sorted(counts, key=lambda name: -next(k for k, v in LEVELS.items() if v == name))
    summary = ", ".join(f"{counts[name]} {name}" for name in order) or "no findings"
    out.write(f"wapiti: {summary}; {failing} of medium or higher severity not accepted\n")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
