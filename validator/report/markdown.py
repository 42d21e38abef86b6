"""Markdown summary (for $GITHUB_STEP_SUMMARY and PR comments) and GitHub workflow annotations."""

from __future__ import annotations

from validator.report.reading import bound_words, not_shown

MAX_ANNOTATIONS = 10
ICONS = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌", "ERROR": "🛑", "SKIPPED": "⏭️", "NOT_JUDGED": "➖", "INCONCLUSIVE": "❔"}
_ORDER = {"FAIL": 0, "INCONCLUSIVE": 1, "WARN": 2, "PASS": 3, "NOT_JUDGED": 4, "SKIPPED": 5}


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def ci_level(confidence: float | None) -> str:
    """'95% CI', '99.5% CI': the level of the interval shown (class slices are judged above 95%)."""
    return f"{(confidence or 0.95) * 100:.4g}% CI"


def render_markdown(data: dict) -> str:
    status = data["status"]
    lines = [f"## {ICONS.get(status, '')} camgate: **{status}** — {data.get('model_name') or data['model']}", ""]
    if data.get("error"):
        lines += [f"**Error:** {data['error']}", ""]
    if data.get("finding"):
        lines += [f"**Where:** {data['finding'][0].upper()}{data['finding'][1:]}.", ""]
    policy = data.get("policy") or {}
    sample = data.get("sample") or {}
    explainer = data.get("explainer") or {}
    if policy:
        lines.append(f"Policy `{policy.get('name')}` v{policy.get('version')} (hash `{policy.get('hash')}`)")
    if explainer:
        lines.append(f"Explainer `{explainer.get('method')}` on layer `{explainer.get('layer')}`")
    if sample:
        lines.append(
            f"Samples explained: {sample.get('n_explained')} of {sample.get('n_selected')} selected "
            f"({sample.get('n_no_box', 0)} without box, {sample.get('n_large_box', 0)} with box area above the cut-off, "
            f"{sample.get('n_dead', 0)} dead maps)"
        )
        if sample.get("n_out_of_scope"):
            lines.append(f"Out of scope: {sample['n_out_of_scope']} record(s) whose classes are all outside "
                         f"--classes (not audited; not counted as skipped)")
    small = sample.get("not_judged_classes") or []
    if small:
        per_class = sample.get("per_class") or {}
        shown = ", ".join(f"{name} ({(per_class.get(name) or {}).get('explained', '?')} explained, "
                          f"{(per_class.get(name) or {}).get('available', '?')} available)" for name in small[:20])
        more = f" and {len(small) - 20} more" if len(small) > 20 else ""
        lines.append(f"Not judged (fewer than min_per_class samples): {len(small)} class(es): {shown}{more}")
    lines.append("")
    checks = data.get("checks") or []
    if checks:
        lines += ["| | check | slice | value | interval | compared | threshold | n |", "|---|---|---|---|---|---|---|---|"]
        ordered = sorted(checks, key=lambda c: _ORDER.get(c["outcome"], 5))
        for c in ordered:
            threshold = " ".join(
                part for part in (f"≥ {fmt(c.get('min'))}" if c.get("min") is not None else "",
                                  f"≤ {fmt(c.get('max'))}" if c.get("max") is not None else "") if part
            ) or "change vs baseline"
            interval = f"{ci_level(c.get('confidence'))} [{fmt(c.get('lo'))}, {fmt(c.get('hi'))}]"
            end = bound_words(c)[0].replace(" bound", "").replace("the point estimate", "point")
            caveat = not_shown(c)
            outcome = f"{c['outcome']} ({caveat.split(' (')[0]})" if caveat else c["outcome"]
            lines.append(
                f"| {ICONS.get(c['outcome'], '')} {outcome} | `{c['check_id']}` ({c['metric']} {c.get('aggregate', '')}) "
                f"| {c['slice']} | {fmt(c.get('observed'))} | {interval} | {fmt(c.get('compared'))} ({end}) | {threshold} "
                f"| {c.get('n')} |"
            )
        lines += ["", "*compared*: the end of the interval the policy names. The pessimistic end (a lower bound "
                  "against a minimum, an upper bound against a maximum) must clear the threshold for a pass; the "
                  "lenient end fails only where the whole interval is beyond it, so a pass there may be *not shown "
                  "to be low (or high)*.", ""]
        problems = [c for c in ordered if c["outcome"] in ("FAIL", "INCONCLUSIVE", "WARN")]
        if problems:
            lines += ["**Why:**", ""] + [f"- {c['message']}" for c in problems[:20]] + [""]
    lines += _evidence(data)
    waivers = data.get("waivers") or []
    if waivers:
        lines += ["**Waivers:**", ""]
        lines += [f"- `{w.get('check')}` {w.get('slice') or ''} — {w.get('state')} until {w.get('expires')}: {w.get('reason')}" for w in waivers]
        lines.append("")
    issues = data.get("data_issues") or []
    if issues:
        lines.append(f"**Data issues:** {len(issues)} (see verdict.json); first: {issues[0]['file']}: {issues[0]['reason']}")
    return "\n".join(lines) + "\n"


def _evidence(data: dict) -> list[str]:
    """The probes, the sanity cascade and the SpRAy clusters flagged off the object."""
    from validator.report.evidence import flagged_clusters, probe_rows, sanity_stages

    lines: list[str] = []
    rows = probe_rows(data)
    if rows:
        lines += ["**Beyond the heatmap** (counterfactual probes, faithfulness, explainer sanity):", "",
                  "| probe | value | interval | n | reading |", "|---|---|---|---|---|"]
        lines += [f"| {r['label']} (`{r['metric']}` {r['aggregate']}) | {fmt(r['value'])} | "
                  f"[{fmt(r['lo'])}, {fmt(r['hi'])}] | {r['n']} | {r['note']} |" for r in rows]
        lines.append("")
    stages = sanity_stages(data)
    if stages:
        shown = ", ".join(f"top {s.get('n_top')}: {fmt(s.get('mean'))}" for s in stages)
        lines += [f"Sanity cascade (mean Spearman with the original maps, by weighted layers randomised from "
                  f"the top): {shown}", ""]
    error = ((data.get("probes") or {}).get("sanity") or {}).get("error")
    if error:
        lines += [f"Sanity check not run: {error}", ""]
    flagged = flagged_clusters(data)
    if flagged:
        lines += ["**Clusters with the heat off the object** (SpRAy, spectral clustering of the maps per class):", ""]
        for c in flagged[:10]:
            examples = ", ".join(f"`{e}`" for e in (c.get("examples") or []))
            lines.append(f"- class `{c['class_name']}`: cluster {c['cluster'] + 1} of {c['k']} holds {c.get('size')} "
                         f"of {c.get('n_class')} maps; {c.get('reason') or 'heat off the object'}; examples: {examples}")
        lines.append("")
    return lines


def github_annotations(data: dict) -> list[str]:
    """At most 10 ::error/::warning lines, then a notice with the count of the rest."""
    lines = []
    if data.get("error"):
        lines.append(f"::error title=camgate {data['status']}::{_escape(data['error'])}")
    problems = [c for c in data.get("checks") or [] if c["outcome"] in ("FAIL", "INCONCLUSIVE", "WARN")]
    for c in problems:
        level = "warning" if c["outcome"] == "WARN" else "error"
        lines.append(f"::{level} title=camgate {c['check_id']} ({c['slice']})::{_escape(c['message'])}")
    shown, rest = lines[:MAX_ANNOTATIONS], len(lines) - MAX_ANNOTATIONS
    if rest > 0:
        shown.append(f"::notice title=camgate::{rest} more failing or warning checks in summary.md / verdict.json")
    return shown


def _escape(text: str) -> str:
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
