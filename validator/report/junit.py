"""JUnit XML: one test case per check x slice, for CI test reporters."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def render_junit(data: dict) -> str:
    checks = data.get("checks") or []
    suite = ET.Element(
        "testsuite",
        name=f"camgate.{data.get('model_name') or 'model'}",
        tests=str(max(len(checks), 1)),
        # INCONCLUSIVE is not a pass: a CI reporter must show it as a failed case
        failures=str(sum(c["outcome"] in ("FAIL", "INCONCLUSIVE") for c in checks)),
        errors="1" if data.get("error") else "0",
        skipped=str(sum(c["outcome"] in ("SKIPPED", "NOT_JUDGED") for c in checks)),
        time=f"{data.get('wall_seconds') or 0:.3f}",
    )
    if data.get("error"):
        case = ET.SubElement(suite, "testcase", classname="camgate", name="audit")
        ET.SubElement(case, "error", message=data["error"], type="camgate.error").text = data["error"]
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"camgate.{c['check_id']}", name=c["slice"])
        if c["outcome"] in ("FAIL", "INCONCLUSIVE"):
            kind = c["metric"] if c["outcome"] == "FAIL" else f"INCONCLUSIVE.{c['metric']}"
            ET.SubElement(case, "failure", message=c["message"], type=kind).text = c["message"]
        elif c["outcome"] in ("SKIPPED", "NOT_JUDGED"):
            ET.SubElement(case, "skipped", message=c["message"])
        elif c["outcome"] == "WARN":
            ET.SubElement(case, "system-out").text = f"WARN: {c['message']}"
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
