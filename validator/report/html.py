"""A self-contained HTML report (images embedded as data: URIs, no script, no external file).

Laid out for the reviewer who opens it: at the top the verdict and every check that failed (then warned),
one card each with the compared value, the end of the interval used and why, the threshold, n and one plain
sentence; the passed checks collapsed below. Then what the maps show (the heat atlas regions and the SpRAy
clusters off the object, as cards with their pictures), the overlays with their key, the probes, the
per-slice table, the rest of the atlases and the run's context.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

# every user-supplied string: the shared HTML escaping (text and quoted attributes)
from validator.report.escape import html_text as escape
from validator.report.markdown import ci_level, fmt
from validator.report.reading import (
    PROBLEMS,
    bound_words,
    caption_parts,
    not_shown,
    num,
    policy_checks,
    sentence,
    threshold_words,
)

COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "ERROR": "#8250df", "SKIPPED": "#57606a",
           "NOT_JUDGED": "#57606a", "INCONCLUSIVE": "#8250df", "PARTIAL": "#57606a"}
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
# the groups of check cards, in the order a reviewer acts on them
GROUPS = (("FAIL", "Failed"), ("INCONCLUSIVE", "Inconclusive"), ("WARN", "Warned"))
FILES = (("verdict", "verdict.json"), ("samples", "samples.csv"), ("junit", "junit.xml"), ("summary", "summary.md"),
         ("log", "error.log"))

CSS = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:12px 16px;color:#1f2328;max-width:1368px}
a{color:#0969da}code{background:#f6f8fa;padding:1px 4px;border-radius:4px;font-size:12px}
h2{font-size:16px;margin:12px 0 5px}h3{font-size:14px;margin:0}
.meta{font-size:12px;color:#57606a;display:flex;flex-wrap:wrap;gap:4px 14px;margin-bottom:6px}
.banner{padding:8px 14px;border-radius:8px;color:#fff;font-size:19px;font-weight:600;display:flex;
  justify-content:space-between;align-items:baseline;gap:12px}
.banner .counts{font-size:13px;font-weight:500}
#finding{margin:6px 0 0}#error{border:2px solid #8250df;border-radius:8px;padding:8px 12px;margin-top:8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:8px}
.card{border:1px solid #d0d7de;border-left:5px solid var(--c);border-radius:6px;padding:4px 9px;background:#fff;
  font-size:13px;line-height:1.3}
.card .head{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.badge{color:#fff;background:var(--c);border-radius:4px;padding:0 6px;font-size:12px;font-weight:700}
.slice{color:#57606a;font-size:12px}.desc{font-weight:600;margin-top:2px}
.sentence{margin:1px 0 3px}
table{border-collapse:collapse;margin:6px 0;width:100%}th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;
  vertical-align:top}th{background:#f6f8fa;font-weight:600}
.facts{margin:0;font-size:13px;width:auto}.facts th{font-size:11px;color:#57606a;background:#fff;padding:1px 7px}
.facts td{padding:1px 7px}small{color:#57606a;font-size:11px}
details>summary{cursor:pointer;font-weight:600;margin:4px 0}.card details>summary{font-weight:400;font-size:11px;
  color:#57606a;margin:1px 0 0}.card details p{margin:2px 0;font-size:12px}
.caveat{color:#9a6700}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figure img{display:block;max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:12px;max-width:640px}.cap{font-weight:600}
.key{color:#57606a;display:flex;flex-wrap:wrap;gap:2px 10px;align-items:center}
.sw{display:inline-block;width:16px;height:10px;border:2px solid;margin-right:3px;vertical-align:middle}
.sw.ann{border-color:#00c800}.sw.hot{border-color:#e60000;border-style:dashed}.sw.none{border-color:#d0d7de}
.sw.obj{background:#74c476;border-color:#74c476}.sw.reg{border:1px solid #57606a}
.bar{display:inline-block;width:60px;height:10px;vertical-align:middle;margin-right:3px;
  background:linear-gradient(90deg,#30123b,#4686fb,#1ae4b6,#a2fc3c,#fabb39,#e4460a,#7a0403)}
.finding .pics{display:flex;flex-wrap:wrap;gap:8px;margin-top:6px}
#findings .cards{grid-template-columns:repeat(auto-fill,minmax(640px,1fr))}
.finding[data-finding=spray]{grid-column:1/-1}
.finding figure[data-kind=cluster_example] img{width:448px}.finding figure[data-kind=cluster_example] figcaption{max-width:448px}
.finding ul{margin:4px 0;padding-left:20px}
"""


def render_html(data: dict, out_dir: Path) -> str:
    status = data["status"]
    name = str(data.get("model_name") or data["model"])
    checks = data.get("checks") or []
    specs = policy_checks(data)
    overlays = data.get("overlays") or []
    shown: set[str] = set()  # overlay paths already embedded: each image appears once
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>camgate {escape(status)} — {escape(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        _header(data),
        f"<div class='banner' id='verdict' style='background:{COLOURS.get(status, '#57606a')}'>"
        f"<span>camgate verdict: {escape(status)} — {escape(name)}</span>"
        f"<span class='counts'>{escape(_counts(checks, data))}</span></div>",
    ]
    if data.get("error"):
        log = " (traceback in <a href='error.log'>error.log</a>)" if (data.get("outputs") or {}).get("log") else ""
        parts.append(f"<div id='error'><b>Error:</b> {escape(data['error'])}{log}</div>")
    if data.get("finding"):
        finding = data["finding"]
        parts.append(f"<p id='finding'><b>Where:</b> {escape(finding[0].upper() + finding[1:])}.</p>")
    parts.append(_check_cards(checks, specs, status))
    parts.append(_passed(checks, specs, status))
    parts.append(_findings(data, out_dir, overlays, shown))
    for kind, title, note in (
        ("worst", "Worst offenders (lowest lift first)", "the samples of each class whose heat lies least on "
         "the object"),
        ("typical", "Typical samples", "the samples nearest their class's median lift"),
    ):
        picked = sorted((o for o in overlays if o["kind"] == kind), key=lambda o: (o.get("lift") is None,
                                                                                   o.get("lift") or 0))
        if picked:
            parts.append(f"<h2>{title}</h2><p>{note}; each: the image as it is, and the heat over a grey copy of "
                         f"it on one fixed scale (the heat a uniform map gives a pixel = 1).</p>"
                         f"<div class='gallery' id='{kind}'>")
            parts += [_figure(out_dir, o, shown) for o in picked]
            parts.append("</div>")
    parts.append(_evidence(data))
    parts.append(_class_table(data))
    rest = [o for o in overlays if o["kind"] == "atlas" and o["path"] not in shown]
    if rest:
        parts.append("<h2>Heat atlas</h2><p>Mean of the maps, each normalised to sum 1, on a fixed grid, on the "
                     "overlays' scale; thin outlines: the corner regions and the border band; beside it, where the "
                     "annotated objects lie. Shown, not judged (atlases with a hot region are in the findings above)."
                     "</p><div class='gallery' id='atlas'>")
        parts += [_figure(out_dir, o, shown) for o in rest]
        parts.append("</div>")
    leftover = [o for o in overlays if o["path"] not in shown]
    if leftover:  # anything no section above placed (never lost: every overlay appears once)
        parts.append("<h2>Other pictures</h2><div class='gallery' id='other'>")
        parts += [_figure(out_dir, o, shown) for o in leftover]
        parts.append("</div>")
    parts.append(_context(data))
    parts.append(_issues(data))
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------- header


def _header(data: dict) -> str:
    versions = data.get("versions") or {}
    policy = data.get("policy") or {}
    outputs = data.get("outputs") or {}
    items = [f"camgate {escape(str(versions.get('camgate', '?')))}",
             f"written {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"]
    if policy:
        items.append(f"policy <b>{escape(str(policy.get('name')))}</b> v{escape(str(policy.get('version')))} "
                     f"<small>({escape(str(policy.get('hash')))})</small>")
    items.append(_mlflow(data.get("tracking") or {}))
    links = [f"<a href='{escape(Path(outputs[key]).name)}'>{label}</a>" for key, label in FILES if outputs.get(key)]
    if links:
        items.append("files: " + " · ".join(links))
    return "<div class='meta' id='meta'>" + "".join(f"<span>{i}</span>" for i in items) + "</div>"


def _mlflow(tracking: dict) -> str:
    run, uri = tracking.get("run_id"), tracking.get("uri")
    if tracking.get("url"):
        return f"MLflow: <a href='{escape(tracking['url'])}'>run {escape(str(run))}</a>"
    if run and uri:
        page = f"http://127.0.0.1:5000/#/experiments/{tracking.get('experiment_id')}/runs/{run}"
        return (f"MLflow run <code>{escape(str(run))}</code>: <code>mlflow ui --backend-store-uri "
                f"{escape(str(uri))}</code>, then {escape(page)}")
    # the reports are written before the MLflow record, then this page again once the run exists: a copy
    # without a run (the one logged to the run itself, or --no-mlflow) says no more than it knew
    if uri:
        return f"MLflow: no run when this page was written ({escape(str(uri))})"
    return "MLflow: no run when this page was written"


def _counts(checks: list[dict], data: dict) -> str:
    words = []
    for outcome, word in (("FAIL", "failed"), ("INCONCLUSIVE", "inconclusive"), ("WARN", "warned"),
                          ("PASS", "passed"), ("NOT_JUDGED", "not judged"), ("SKIPPED", "skipped")):
        n = sum(c.get("outcome") == outcome for c in checks)
        if n:
            words.append(f"{n} {word}")
    if data.get("exit_code") is not None:
        words.append(f"exit {data['exit_code']}")
    return " · ".join(words)


# -------------------------------------------------------------------------------------------- checks


def _check_cards(checks: list[dict], specs: dict, status: str) -> str:
    groups = list(GROUPS)
    if status == "INCONCLUSIVE":  # nothing compared: the slices not judged are the reason
        groups += [("NOT_JUDGED", "Not judged"), ("SKIPPED", "Skipped")]
    parts = []
    for outcome, title in groups:
        chosen = [c for c in checks if c.get("outcome") == outcome]
        if outcome in ("NOT_JUDGED", "SKIPPED"):
            chosen = [c for c in chosen if not str(c.get("check_id", "")).startswith("data.")]
        if chosen:
            parts.append(f"<section class='group' id='{outcome.lower()}'><h2>{title} ({len(chosen)})</h2>"
                         f"<div class='cards'>{''.join(_card(c, specs.get(c['check_id'])) for c in chosen)}</div>"
                         f"</section>")
    return "".join(parts)


def _card(c: dict, spec: dict | None) -> str:
    outcome = c["outcome"]
    colour = COLOURS.get(outcome, "#57606a")
    description = (spec or {}).get("description")
    short, why = bound_words(c)
    waiver = f"<p>Waived: {escape(str(c['waiver'].get('reason')))}</p>" if c.get("waiver") else ""
    interval = f"{ci_level(c.get('confidence'))} [{num(c.get('lo'))}, {num(c.get('hi'))}]" \
        if c.get("lo") is not None and c.get("hi") is not None and c.get("bound") != "point" else ""
    anchor = escape(f"check-{c['check_id']}-{c['slice']}".replace(" ", "_"))
    return (
        f"<article class='card' id='{anchor}' data-outcome='{outcome}' style='--c:{colour}'>"
        f"<div class='head'><span class='badge'>{outcome}</span><code>{escape(c['check_id'])}</code>"
        f"<span class='slice'>{escape(c['slice'])} · severity {escape(str(c.get('severity') or ''))}</span></div>"
        + (f"<div class='desc'>{escape(description)}</div>" if description else "")
        + f"<p class='sentence'>{escape(sentence(c, spec))}</p>"
        "<table class='facts'><tr><th>value</th><th>compared</th><th>threshold</th><th>n</th></tr>"
        f"<tr><td class='value'>{num(c.get('observed'))} <small>{escape(interval)}</small></td>"
        f"<td class='compared' title='{escape(why)}'>{num(c.get('compared'))} <small>{escape(short)}</small></td>"
        f"<td class='threshold'>{escape(threshold_words(c))}</td><td class='n'>{c.get('n')}</td></tr></table>"
        f"<details><summary>why this bound; full message</summary><p>{escape(short)}: {escape(why)}.</p>"
        f"<p>{escape(c['message'])}</p>{waiver}</details></article>"
    )


def _passed(checks: list[dict], specs: dict, status: str) -> str:
    """Every check that is not a problem, collapsed: passed, then not judged and skipped."""
    cards_shown = {"NOT_JUDGED", "SKIPPED"} if status == "INCONCLUSIVE" else set()
    rest = [c for c in checks if c.get("outcome") not in PROBLEMS
            and not (c.get("outcome") in cards_shown and not str(c.get("check_id", "")).startswith("data."))]
    if not rest:
        return ""
    order = {"PASS": 0, "NOT_JUDGED": 1, "SKIPPED": 2}
    rest.sort(key=lambda c: order.get(c["outcome"], 3))
    rows = []
    for c in rest:
        short, why = bound_words(c)
        caveat = not_shown(c)
        mark = f" <span class='caveat'>({escape(caveat.split(' (')[0])})</span>" if caveat else ""
        rows.append(
            f"<tr data-outcome='{c['outcome']}'><td style='color:{COLOURS.get(c['outcome'], '#57606a')}'><b>"
            f"{c['outcome']}</b>{mark}</td><td><code>{escape(c['check_id'])}</code></td><td>{escape(c['slice'])}</td>"
            f"<td>{escape(sentence(c, specs.get(c['check_id'])))}</td>"
            f"<td title='{escape(why)}'>{num(c.get('compared'))} <small>{escape(short)}</small></td>"
            f"<td>{escape(threshold_words(c))}</td><td>{c.get('n')}</td></tr>")
    counts = {o: sum(c["outcome"] == o for c in rest) for o in order}
    caveats = sum(bool(not_shown(c)) for c in rest)
    words = [f"{counts['PASS']} passed"]
    if caveats:
        words.append(f"{caveats} of them not shown either way")
    words += [f"{counts[o]} {o.lower().replace('_', ' ')}" for o in ("NOT_JUDGED", "SKIPPED") if counts[o]]
    return (f"<details id='passed'><summary>{escape(', '.join(words))} (the data checks included)</summary>"
            "<table><tr><th>outcome</th><th>check</th><th>slice</th><th>reading</th><th>compared</th>"
            f"<th>threshold</th><th>n</th></tr>{''.join(rows)}</table></details>")


# ------------------------------------------------------------------------------------------ findings


def _findings(data: dict, out_dir: Path, overlays: list[dict], shown: set[str]) -> str:
    """The heat atlas regions and the SpRAy clusters off the object, as cards with their pictures."""
    from validator.report.evidence import atlas_findings, flagged_clusters, unsplit_classes

    cards = []
    atlases = {(o.get("class_name") or "overall"): o for o in overlays if o["kind"] == "atlas"}
    unsplit = {u["class_name"]: u for u in unsplit_classes(data)}
    for found in atlas_findings(data):
        key = found["key"]
        who = "all classes" if key == "overall" else f"class {key}"
        lines = "".join(f"<li>the {escape(r['words'])} holds {r['share']:.0%} of the heat on {r['area']:.1%} of "
                        f"the frame: {r['lift']:.1f}x what a uniform map gives it</li>" for r in found["regions"])
        note = ""
        if key in unsplit:
            u = unsplit[key]
            lift = f" (object lift {u['object_lift']:.2f}: {'less' if u['object_lift'] < 1 else 'more'} heat on the " \
                   f"objects than a uniform map)" if u.get("object_lift") is not None else ""
            note = f"<p><small>SpRAy found no subgroup: one cluster holds all {u['n']} maps{escape(lift)}.</small></p>"
        pic = _figure(out_dir, atlases[key], shown) if key in atlases else ""
        cards.append(f"<article class='card finding' data-finding='atlas' style='--c:#9a6700'><div class='head'>"
                     f"<span class='badge'>ATLAS</span><b>Heat atlas, {escape(who)}</b><span class='slice'>"
                     f"{found.get('n')} maps</span></div><ul>{lines}</ul>{note}<div class='pics'>{pic}</div></article>")
    for c in flagged_clusters(data):
        mean = next((o for o in overlays if o["kind"] == "cluster" and o.get("class_name") == c["class_name"]
                     and o.get("cluster") == c["cluster"]), None)
        examples = [o for o in overlays if o["kind"] == "cluster_example" and o.get("class_name") == c["class_name"]
                    and o.get("cluster") == c["cluster"]]
        pics = "".join(_figure(out_dir, o, shown) for o in ([mean] if mean else []) + examples)
        cards.append(f"<article class='card finding' data-finding='spray' style='--c:#9a6700'><div class='head'>"
                     f"<span class='badge'>SpRAy</span><b>Class {escape(str(c['class_name']))}: cluster "
                     f"{c['cluster'] + 1} of {c.get('k')}</b><span class='slice'>{c.get('size')} of "
                     f"{c.get('n_class')} maps</span></div><p>{escape(c.get('reason') or 'heat off the object')}.</p>"
                     f"<div class='pics'>{pics}</div></article>")
    if not cards:
        return ""
    return ("<section id='findings'><h2>What the maps show (discovery: shown, not judged)</h2><p>Atlas regions "
            "holding at least twice the heat a uniform map gives them, and SpRAy clusters (Lapuschkin et al. 2019: "
            "spectral clustering of each class's maps) whose heat sits off the objects.</p>"
            f"<div class='cards'>{''.join(cards)}</div></section>")


# ------------------------------------------------------------------------------------------ pictures


def _figure(out_dir: Path, overlay: dict, shown: set[str]) -> str:
    shown.add(overlay["path"])
    path = out_dir / overlay["path"]
    try:
        encoded = base64.b64encode(path.read_bytes()).decode()
    except OSError:
        return f"<figure class='overlay missing'><figcaption>missing image {escape(overlay['path'])}</figcaption></figure>"
    kind = overlay.get("kind")
    return (f"<figure class='overlay' data-kind='{escape(str(kind))}'><img alt='{escape(overlay['path'])}' "
            f"src='data:image/png;base64,{encoded}'><figcaption>{_caption(overlay)}{_key(overlay)}"
            f"</figcaption></figure>")


def _caption(o: dict) -> str:
    if o.get("kind") in ("atlas", "cluster"):
        who = "all classes" if not o.get("class_name") else f"class {o['class_name']}"
        what = o.get("caption") or "heat atlas"
        return f"<div class='cap'>{escape(who)} · {escape(str(what))}</div>"
    parts = caption_parts(o, escape)
    if o.get("corner_heat_max") is not None:
        parts.append(f"corner heat {o['corner_heat_max']:.2f}")
    if o.get("caption"):
        parts.append(escape(str(o["caption"])))
    sample = f"<code>{escape(str(o['sample_id']))}</code>" if o.get("sample_id") else ""
    return f"<div class='cap'>{' · '.join(parts)}</div>{sample}"


def _key(o: dict) -> str:
    """The figure's key in words beside it (the PNG carries the same legend and colour bar)."""
    scale = escape(str(o.get("scale") or "heat ÷ uniform map, fixed scale"))
    items = [f"<span><span class='bar'></span>{scale}</span>"]
    if o.get("kind") in ("atlas", "cluster"):
        items.append("<span><span class='sw reg'></span>corner regions, border band (dashed)</span>")
        if o.get("object_map"):
            items.append("<span><span class='sw obj'></span>right: where the annotated objects lie</span>")
    else:
        items.append("<span><span class='sw ann'></span>annotated object"
                     f"{'' if o.get('has_box', True) else ' (none on this image)'}</span>")
        hot = str(o.get("hot_region") or "hottest region")
        klass = "hot" if hot.startswith("hottest") else "none"
        items.append(f"<span><span class='sw {klass}'></span>{escape(hot)}</span>")
    return f"<div class='key legend'>{''.join(items)}</div>"


# ------------------------------------------------------------------------------------------- tables


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
    body = "".join(f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in rows if v is not None)
    return f"<h2>Run</h2><table id='context'>{body}</table>"


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
            cells.append(f"<td>{fmt(est.get('value'))}<small>{interval}</small></td>")
        n = ((metrics.get("correct") or {}).get("rate") or {}).get("n")
        rows.append(f"<tr><td>{escape(slice_name)}</td><td>{fmt(n)}</td>{''.join(cells)}</tr>")
    return "<h2>Per slice (overall, class, box area)</h2><p>Intervals are 95% unless a level is shown (the " \
           "level a class check judged). Overall and box-area slices are weighted to the data's class counts.</p>" \
           f"<table id='classes'><tr><th>slice</th><th>n</th>{head}</tr>{''.join(rows)}</table>"


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
