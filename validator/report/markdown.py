"""Markdown summary (for $GITHUB_STEP_SUMMARY and PR comments) and GitHub workflow annotations."""

from __future__ import annotations

from validator.report.escape import gh_data, gh_property, md_code, md_text
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
    # every string from the user's files (names, paths, messages that quote them) goes through md_text/md_code
    lines = [f"## {ICONS.get(status, '')} camgate: **{status}** — {md_text(data.get('model_name') or data['model'])}",
             ""]
    if data.get("error"):
        lines += [f"**Error:** {md_text(data['error'])}", ""]
    if data.get("finding"):
        lines += [f"**Where:** {md_text(data['finding'][0].upper() + data['finding'][1:])}.", ""]
    policy = data.get("policy") or {}
    sample = data.get("sample") or {}
    explainer = data.get("explainer") or {}
    if policy:
        lines.append(f"Policy {md_code(policy.get('name'), cell=False)} v{md_text(policy.get('version'))} "
                     f"(hash {md_code(policy.get('hash'), cell=False)})")
    if explainer:
        lines.append(f"Explainer {md_code(explainer.get('method'), cell=False)} on layer "
                     f"{md_code(explainer.get('layer'), cell=False)}")
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
        shown = ", ".join(f"{md_text(name)} ({(per_class.get(name) or {}).get('explained', '?')} explained, "
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
                f"| {ICONS.get(c['outcome'], '')} {outcome} | {md_code(c['check_id'])} "
                f"({md_text(c['metric'])} {md_text(c.get('aggregate', ''))}) "
                f"| {md_text(c['slice'])} | {fmt(c.get('observed'))} | {interval} | {fmt(c.get('compared'))} ({end}) "
                f"| {threshold} | {c.get('n')} |"
            )
        lines += ["", "*compared*: the end of the interval the policy names. The pessimistic end (a lower bound "
                  "against a minimum, an upper bound against a maximum) must clear the threshold for a pass; the "
                  "lenient end fails only where the whole interval is beyond it, so a pass there may be *not shown "
                  "to be low (or high)*.", ""]
        problems = [c for c in ordered if c["outcome"] in ("FAIL", "INCONCLUSIVE", "WARN")]
        if problems:
            lines += ["**Why:**", ""] + [f"- {md_text(c['message'])}" for c in problems[:20]] + [""]
    lines += _evidence(data)
    waivers = data.get("waivers") or []
    if waivers:
        lines += ["**Waivers:**", ""]
        lines += [f"- {md_code(w.get('check'), cell=False)} {md_text(w.get('slice') or '')} — {md_text(w.get('state'))} "
                  f"until {md_text(w.get('expires'))}: {md_text(w.get('reason'))}" for w in waivers]
        lines.append("")
    issues = data.get("data_issues") or []
    if issues:
        lines.append(f"**Data issues:** {len(issues)} (see verdict.json); first: {md_text(issues[0]['file'])}: "
                     f"{md_text(issues[0]['reason'])}")
    return "\n".join(lines) + "\n"


def _evidence(data: dict) -> list[str]:
    """The probes, the sanity cascade and the SpRAy clusters flagged off the object."""
    from validator.report.evidence import flagged_clusters, probe_rows, sanity_stages

    lines: list[str] = []
    rows = probe_rows(data)
    if rows:
        lines += ["**Beyond the heatmap** (counterfactual probes, faithfulness, explainer sanity):", "",
                  "| probe | value | interval | n | reading |", "|---|---|---|---|---|"]
        lines += [f"| {md_text(r['label'])} ({md_code(r['metric'])} {r['aggregate']}) | {fmt(r['value'])} | "
                  f"[{fmt(r['lo'])}, {fmt(r['hi'])}] | {r['n']} | {md_text(r['note'])} |" for r in rows]
        lines.append("")
    stages = sanity_stages(data)
    if stages:
        shown = ", ".join(f"top {s.get('n_top')}: {fmt(s.get('mean'))}" for s in stages)
        lines += [f"Sanity cascade (mean Spearman with the original maps, by weighted layers randomised from "
                  f"the top): {shown}", ""]
    error = ((data.get("probes") or {}).get("sanity") or {}).get("error")
    if error:
        lines += [f"Sanity check not run: {md_text(error)}", ""]
    flagged = flagged_clusters(data)
    if flagged:
        lines += ["**Clusters with the heat off the object** (SpRAy, spectral clustering of the maps per class):", ""]
        for c in flagged[:10]:
            examples = ", ".join(md_code(e, cell=False) for e in (c.get("examples") or []))
            lines.append(f"- class {md_code(c['class_name'], cell=False)}: cluster {c['cluster'] + 1} of {c['k']} "
                         f"holds {c.get('size')} of {c.get('n_class')} maps; "
                         f"{md_text(c.get('reason') or 'heat off the object')}; examples: {examples}")
        lines.append("")
    return lines


def github_annotations(data: dict) -> list[str]:
    """At most 10 ::error/::warning lines, then a notice with the count of the rest."""
    lines = []
    if data.get("error"):
        lines.append(f"::error title={gh_property('camgate ' + data['status'])}::{gh_data(data['error'])}")
    problems = [c for c in data.get("checks") or [] if c["outcome"] in ("FAIL", "INCONCLUSIVE", "WARN")]
    for c in problems:
        level = "warning" if c["outcome"] == "WARN" else "error"
        title = gh_property(f"camgate {c['check_id']} ({c['slice']})")
        lines.append(f"::{level} title={title}::{gh_data(c['message'])}")
    shown, rest = lines[:MAX_ANNOTATIONS], len(lines) - MAX_ANNOTATIONS
    if rest > 0:
        shown.append(f"::notice title=camgate::{rest} more failing or warning checks in summary.md / verdict.json")
    return shown
