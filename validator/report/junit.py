"""JUnit XML: one test case per check x slice, for CI test reporters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from validator.report.escape import xml_text as x


def render_junit(data: dict) -> str:
    """Every user-supplied string goes through :func:`~validator.report.escape.xml_text` (``x``): ElementTree
    escapes markup itself but writes characters XML cannot hold, which would leave the file unparsable."""
    checks = data.get("checks") or []
    suite = ET.Element(
        "testsuite",
        name=x(f"camgate.{data.get('model_name') or 'model'}"),
        tests=str(max(len(checks), 1)),
        # INCONCLUSIVE is not a pass: a CI reporter must show it as a failed case
        failures=str(sum(c["outcome"] in ("FAIL", "INCONCLUSIVE") for c in checks)),
        errors="1" if data.get("error") else "0",
        skipped=str(sum(c["outcome"] in ("SKIPPED", "NOT_JUDGED") for c in checks)),
        time=f"{data.get('wall_seconds') or 0:.3f}",
    )
    if data.get("error"):
        case = ET.SubElement(suite, "testcase", classname="camgate", name="audit")
        ET.SubElement(case, "error", message=x(data["error"]), type="camgate.error").text = x(data["error"])
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=x(f"camgate.{c['check_id']}"), name=x(c["slice"]))
        if c["outcome"] in ("FAIL", "INCONCLUSIVE"):
            kind = c["metric"] if c["outcome"] == "FAIL" else f"INCONCLUSIVE.{c['metric']}"
            ET.SubElement(case, "failure", message=x(c["message"]), type=x(kind)).text = x(c["message"])
        elif c["outcome"] in ("SKIPPED", "NOT_JUDGED"):
            ET.SubElement(case, "skipped", message=x(c["message"]))
        elif c["outcome"] == "WARN":
            ET.SubElement(case, "system-out").text = x(f"WARN: {c['message']}")
    suites = ET.Element("testsuites")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
