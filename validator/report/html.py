"""A self-contained HTML report (images embedded): banner, per-class table, checks, galleries, heat atlas."""

from __future__ import annotations

import base64
from pathlib import Path

# every user-supplied string: the shared HTML escaping (text and quoted attributes)
from validator.report.escape import html_text as escape
from validator.report.markdown import ci_level, fmt

COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "ERROR": "#8250df", "SKIPPED": "#57606a", "NOT_JUDGED": "#57606a", "INCONCLUSIVE": "#8250df"}
CLASS_COLUMNS = (
    ("lift", "mean", "lift (mean)"),
    ("relative_lift", "mean", "relative lift"),
    ("energy", "mean", "in-box heat"),
    ("pointing_hit", "rate", "pointing game"),
    ("corner_heat_max", "mean", "corner heat"),
    ("corner_lift_max", "mean", "corner lift"),
    ("edge_lift_max", "mean", "edge lift"),
    ("correct", "rate", "accuracy"),
)

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328;max-width:1200px}
.banner{padding:14px 18px;border-radius:8px;color:#fff;font-size:20px;font-weight:600}
table{border-collapse:collapse;margin:12px 0;width:100%}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left}
th{background:#f6f8fa}.tag{font-weight:600}.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:260px}figure img{width:256px;image-rendering:pixelated;border:1px solid #d0d7de}
figcaption{font-size:12px}code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def render_html(data: dict, out_dir: Path) -> str:
    status = data["status"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>camgate {escape(status)} — {escape(str(data.get('model_name') or data['model']))}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<div class='banner' id='verdict' style='background:{COLOURS.get(status, '#57606a')}'>"
        f"camgate verdict: {escape(status)} — {escape(str(data.get('model_name') or data['model']))}</div>",
    ]
    if data.get("error"):
        parts.append(f"<p><b>Error:</b> {escape(data['error'])}</p>")
    if data.get("finding"):
        finding = data["finding"]
        parts.append(f"<p id='finding'><b>Where:</b> {escape(finding[0].upper() + finding[1:])}.</p>")
    parts.append(_context(data))
    parts.append(_class_table(data))
    parts.append(_checks_table(data))
    overlays = data.get("overlays") or []
    for kind, title in (("worst", "Worst offenders (lowest lift first)"), ("typical", "Typical samples")):
        shown = sorted((o for o in overlays if o["kind"] == kind), key=lambda o: (o.get("lift") is None, o.get("lift") or 0))
        if shown:
            parts.append(f"<h2>{title}</h2><div class='gallery' id='{kind}'>")
            parts += [_figure(out_dir, o) for o in shown]
            parts.append("</div>")
    parts.append(_evidence(data))
    atlases = [o for o in overlays if o["kind"] == "atlas"]
    if atlases:
        parts.append("<h2>Heat atlas</h2><p>Mean of the maps, each normalised to sum 1, on a fixed grid; corners "
                     "outlined. A hot corner or border here is a shortcut candidate even where boxes are missing.</p>"
                     "<div class='gallery' id='atlas'>")
        parts += [_figure(out_dir, o) for o in atlases]
        parts.append("</div>")
    clusters = [o for o in overlays if o["kind"] in ("cluster", "cluster_example")]
    if clusters:
        parts.append("<h2>Clusters with the heat off the object</h2><p>SpRAy (Lapuschkin et al. 2019): spectral "
                     "clustering of each class's maps; a cluster whose mean map sits off the objects (off the "
                     "centre without boxes) is a subgroup the model may read for the wrong reason. Its mean map "
                     "and examples:</p><div class='gallery' id='clusters'>")
        parts += [_figure(out_dir, o) for o in clusters]
        parts.append("</div>")
    parts.append(_issues(data))
    parts.append("</body></html>")
    return "\n".join(parts)


def _context(data: dict) -> str:
    policy, explainer, sample = data.get("policy") or {}, data.get("explainer") or {}, data.get("sample") or {}
    rows = [
        ("Model", data.get("model")),
        ("Data", data.get("data")),
        ("Policy", f"{policy.get('name')} v{policy.get('version')} (hash {policy.get('hash')})" if policy else None),
        ("Explainer", f"{explainer.get('method')} on layer {explainer.get('layer')}" if explainer else None),
        ("Samples", f"{sample.get('n_explained')} explained of {sample.get('n_selected')} selected" if sample else None),
        ("Out of scope", f"{sample['n_out_of_scope']} record(s) of classes outside --classes (not audited, not "
                         f"skipped)" if sample.get("n_out_of_scope") else None),
        ("Exit code", data.get("exit_code")),
    ]
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in rows if v is not None) + "</table>"


def _class_table(data: dict) -> str:
    summary = data.get("summary") or {}
    if not summary:
        return ""
    head = "".join(f"<th>{escape(label)}</th>" for _, _, label in CLASS_COLUMNS)
    rows = []
    for slice_name, metrics in summary.items():
        cells = []
        for metric, how, _ in CLASS_COLUMNS:
            est = (metrics.get(metric) or {}).get(how) or {}
            # a class aggregate a check judged carries the judged (Bonferroni) level; the rest are 95%
            level = f" {ci_level(est['confidence'])}" if est.get("confidence") else ""
            interval = f"{level} [{fmt(est.get('lo'))}, {fmt(est.get('hi'))}]" if est.get("lo") is not None else ""
            cells.append(f"<td>{fmt(est.get('value'))}{interval}</td>")
        n = ((metrics.get("correct") or {}).get("rate") or {}).get("n")
        rows.append(f"<tr><td>{escape(slice_name)}</td><td>{fmt(n)}</td>{''.join(cells)}</tr>")
    return f"<h2>Per slice (overall, class, box area)</h2><p>Intervals are 95% unless a level is shown (the " \
           f"level a class check judged). Overall and box-area slices are weighted to the data's class counts.</p>" \
           f"<table id='classes'><tr><th>slice</th><th>n</th>{head}</tr>{''.join(rows)}</table>"


def _checks_table(data: dict) -> str:
    checks = data.get("checks") or []
    if not checks:
        return ""
    rows = []
    for c in checks:
        colour = COLOURS.get(c["outcome"], "#57606a")
        waiver = f" (waived: {escape(str(c['waiver'].get('reason')))})" if c.get("waiver") else ""
        rows.append(
            f"<tr><td class='tag' style='color:{colour}'>{c['outcome']}</td><td><code>{escape(c['check_id'])}</code></td>"
            f"<td>{escape(c['slice'])}</td><td>{escape(c['message'])}{waiver}</td></tr>"
        )
    return f"<h2>Checks</h2><table id='checks'><tr><th>outcome</th><th>check</th><th>slice</th><th>detail</th></tr>{''.join(rows)}</table>"


def _evidence(data: dict) -> str:
    from validator.report.evidence import probe_rows, sanity_stages

    rows = probe_rows(data)
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{escape(r['label'])} (<code>{escape(r['metric'])}</code> {escape(r['aggregate'])})</td>"
        f"<td>{fmt(r['value'])}</td><td>[{fmt(r['lo'])}, {fmt(r['hi'])}]</td><td>{r['n']}</td>"
        f"<td>{escape(r['note'])}</td></tr>" for r in rows)
    stages = sanity_stages(data)
    cascade = ""
    if stages:
        cells = "".join(f"<tr><td>{s.get('n_top')}</td><td>{escape(str((s.get('layers') or [''])[-1]))}</td>"
                        f"<td>{fmt(s.get('mean'))}</td><td>{fmt(s.get('median'))}</td></tr>" for s in stages)
        cascade = ("<h3>Explainer sanity (Adebayo et al. 2018)</h3><p>Spearman rank correlation of each map with "
                   "the map after the top weighted layers are re-initialised, cumulatively from the top.</p>"
                   "<table id='sanity'><tr><th>layers randomised</th><th>last layer</th><th>mean</th>"
                   f"<th>median</th></tr>{cells}</table>")
    return ("<h2>Beyond the heatmap</h2><table id='probes'><tr><th>probe</th><th>value</th><th>interval</th>"
            f"<th>n</th><th>reading</th></tr>{body}</table>{cascade}")


def _figure(out_dir: Path, overlay: dict) -> str:
    path = out_dir / overlay["path"]
    try:
        encoded = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return f"<figure><figcaption>missing image {escape(overlay['path'])}</figcaption></figure>"
    caption = escape(str(overlay.get("class_name") or "all classes"))
    if overlay.get("caption"):
        caption += f" · {escape(str(overlay['caption']))}"
    if overlay.get("lift") is not None:
        caption += f" · lift {overlay['lift']:.2f}"
    if overlay.get("corner_heat_max") is not None:
        caption += f" · corner heat {overlay['corner_heat_max']:.2f}"
    if overlay.get("sample_id"):
        caption += f"<br><code>{escape(str(overlay['sample_id']))}</code>"
    return f"<figure><img alt='{escape(overlay['path'])}' src='data:image/png;base64,{encoded}'><figcaption>{caption}</figcaption></figure>"


def _issues(data: dict) -> str:
    issues = data.get("data_issues") or []
    if not issues:
        return ""
    rows = "".join(
        f"<tr><td>{escape(i['action'])}</td><td>{escape(str(i['file']))}</td><td>{escape(str(i.get('annotation') or ''))}</td>"
        f"<td>{escape(i['reason'])}</td></tr>"
        for i in issues[:200]
    )
    more = f"<p>… and {len(issues) - 200} more in verdict.json</p>" if len(issues) > 200 else ""
    return f"<h2>Data issues ({len(issues)})</h2><table id='issues'><tr><th>action</th><th>file</th><th>annotation</th><th>reason</th></tr>{rows}</table>{more}"
