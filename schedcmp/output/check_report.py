"""What `schedcmp check` leaves for a CI job: a self-contained HTML report, JUnit XML, a step-summary table.

Pure functions from the check's results document (and the PNGs it wrote) to text.
"""

from __future__ import annotations

import base64
import html as html_escape
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from schedcmp.core.records import status_colour
from schedcmp.quality.metrics import DRIFT, ERROR, MISSING, NONDETERMINISTIC


def metric_text(case: dict[str, Any]) -> str:
    """`max_abs 0.012 (≤ 0.008) · cosine 3e-05 (≤ 1e-05) · SSIM 0.981 · changed 2.1%`."""
    found, limit = case.get("metrics") or {}, case.get("tolerance") or {}
    if "reason" in found:
        return found["reason"]
    parts = []
    if "max_abs" in found:
        parts.append(f"max_abs {found['max_abs']:.4g} (≤ {limit.get('max_abs', float('nan')):.4g})")
    if "cosine" in found:
        parts.append(f"cosine {found['cosine']:.3g} (≤ {limit.get('cosine', float('nan')):.3g})")
    if "ssim" in found:
        parts.append(f"SSIM {found['ssim']:.4f}")
    if "changed_pixels" in found:
        parts.append(f"changed {100 * found['changed_pixels']:.2f}%")
    return " · ".join(parts)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>schedcmp check: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1f2328; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }}
.status {{ font-weight: bold; color: white; padding: 1px 6px; border-radius: 4px; }}
.case {{ margin: 1.5em 0; }}
.images {{ display: flex; gap: 12px; }}
figure {{ margin: 0; }} figcaption {{ text-align: center; color: #57606a; }}
img {{ image-rendering: pixelated; width: 256px; border: 1px solid #d0d7de; }}
</style></head>
<body>
<h1>schedcmp check</h1>
<p>{summary}</p>
<table><thead><tr><th>case</th><th>scheduler</th><th>status</th><th>metrics (tolerance)</th><th>seconds</th></tr>
</thead>
<tbody>
{rows}
</tbody></table>
{cases}
<script>
// Count the images that really decoded, so a browser test can tell a page that shows them.
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.images);
  var shown = images.filter(function (img) {{ return img.complete && img.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-shown", String(shown));
  document.body.setAttribute("data-images-total", String(images.length));
}});
</script>
</body></html>
"""


def html(document: dict[str, Any], results_dir: Path) -> str:
    """report.html: every case's verdict; for each that is not a match, baseline | result | diff."""
    escape = html_escape.escape
    counts: dict[str, int] = {}
    for case in document["cases"]:
        counts[case["status"]] = counts.get(case["status"], 0) + 1
    summary = (
        f"baseline <code>{escape(document['baseline'])}</code> ({escape(document['baseline_device_class'])}), run on "
        f"{escape(document['device_class'])} with <b>{escape(document['tolerance_profile'])}</b> tolerances; model "
        f"{escape(str(document['model']))}. " + ", ".join(f"{n} {escape(s)}" for s, n in sorted(counts.items()))
    )
    rows, sections = [], []
    for case in document["cases"]:
        colour = status_colour(case["status"])
        detail = case.get("error") or metric_text(case)
        seconds = "" if case.get("seconds") is None else f"{case['seconds']:.2f}"
        rows.append(
            f'<tr><td><a href="#{escape(case["id"])}">{escape(case["id"])}</a></td><td>{escape(case["scheduler"])}</td>'
            f'<td><span class="status" style="background:{colour}">{escape(case["status"])}</span></td>'
            f"<td>{escape(detail)}</td><td>{seconds}</td></tr>"
        )
        figures = [
            f'<figure><img alt="{label} of {escape(case["id"])}" src="{data_uri(results_dir / case[key])}">'
            f"<figcaption>{label}</figcaption></figure>"
            for key, label in (("baseline_image", "baseline"), ("result_image", "result"), ("diff_image", "difference"))
            if case.get(key) and (results_dir / case[key]).is_file()
        ]
        if figures:
            sections.append(
                f'<div class="case" id="{escape(case["id"])}"><h3>{escape(case["id"])}: {escape(case["status"])}</h3>'
                f'<div class="images">{"".join(figures)}</div></div>'
            )
    return PAGE.format(
        title=escape(document["baseline"]), summary=summary, rows="\n".join(rows), cases="\n".join(sections)
    )


def junit_xml(document: dict[str, Any]) -> str:
    """One testcase per case: <failure> for drift and missing baselines, <error> for crashes."""
    cases = document["cases"]
    failures = sum(c["status"] in (DRIFT, MISSING, NONDETERMINISTIC) and not c.get("updated") for c in cases)
    errors = sum(c["status"] == ERROR for c in cases)
    seconds = sum(c.get("seconds") or 0.0 for c in cases)
    suite = ElementTree.Element(
        "testsuite",
        name="schedcmp check",
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        time=f"{seconds:.3f}",
    )
    for case in cases:
        element = ElementTree.SubElement(
            suite,
            "testcase",
            classname=f"schedcmp.{document['baseline_device_class']}",
            name=case["id"],
            time=f"{case.get('seconds') or 0.0:.3f}",
        )
        properties = ElementTree.SubElement(element, "properties")
        ElementTree.SubElement(properties, "property", name="status", value=case["status"])
        for key, value in sorted((case.get("metrics") or {}).items()):
            ElementTree.SubElement(properties, "property", name=key, value=str(value))
        for key, value in sorted((case.get("tolerance") or {}).items()):
            ElementTree.SubElement(properties, "property", name=f"tolerance_{key}", value=str(value))
        if case.get("updated"):
            continue
        if case["status"] in (DRIFT, MISSING, NONDETERMINISTIC):
            message = f"{case['status']}: {case.get('error') or metric_text(case)}"
            ElementTree.SubElement(element, "failure", message=message, type=case["status"]).text = message
        elif case["status"] == ERROR:
            ElementTree.SubElement(
                element, "error", message=case.get("error") or "generation failed", type="error"
            ).text = case.get("error")
    ElementTree.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"


def step_summary(document: dict[str, Any]) -> str:
    """A Markdown table for $GITHUB_STEP_SUMMARY: status, metrics and tolerance per case, no images."""
    lines = [
        f"### schedcmp check: {document['baseline_device_class']} baseline, {document['tolerance_profile']} tolerances",
        "",
        "| case | status | metrics (tolerance) |",
        "|---|---|---|",
    ]
    for case in document["cases"]:
        detail = (case.get("error") or metric_text(case)).replace("|", "\\|")
        lines.append(f"| {case['id']} | {case['status']}{' (updated)' if case.get('updated') else ''} | {detail} |")
    return "\n".join(lines) + "\n"
