"""How a check reads in plain words: which end of the interval was compared and why, the threshold, and one
sentence that says what the numbers mean ("not shown to be low" where a pass rests on the interval alone).

Reads only verdict.json's dicts (a check and the policy's content), so a stored verdict re-renders the same.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from validator.policy.wording import change_words, quantity

PROBLEMS = ("FAIL", "INCONCLUSIVE", "WARN")
_SEVERITY_VERB = {"fail": "fails", "warn": "warns", "inconclusive": "is inconclusive", "not_judged": "is not judged"}


def num(value, digits: int = 3) -> str:
    """Three significant digits; '–' where there is no number."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def level(check: dict) -> str:
    return f"{(check.get('confidence') or 0.95) * 100:.4g}%"


def policy_checks(data: dict) -> dict:
    """{check id: the policy's check entry} from verdict.json's policy content (empty when not recorded)."""
    content = (data.get("policy") or {}).get("content") or {}
    return {c.get("id"): c for c in content.get("checks") or [] if isinstance(c, dict)}


def quantity_words(check: dict, spec: dict | None = None) -> str:
    """'mean relative_lift', 'share of samples with lift >= 1', 'rate of correct', ... ('n_samples' for the
    data checks, which the policy does not list)."""
    aggregate = check.get("aggregate")
    if aggregate in ("mean", "median", "p10", "p90", "rate"):
        spec = spec or {}
        return quantity(SimpleNamespace(aggregate=aggregate, metric=check["metric"], threshold=spec.get("threshold")))
    return str(check.get("metric"))


def _pessimistic(check: dict) -> bool | None:
    """True: the compared end is the one that makes passing harder (lower bound against a minimum, upper
    against a maximum); False: the lenient end (it fails only where the whole interval is beyond the
    threshold); None: a point estimate, or a check with both a minimum and a maximum."""
    bound, low, high = check.get("bound"), check.get("min"), check.get("max")
    if bound not in ("lower", "upper") or (low is not None) == (high is not None):
        return None
    return (bound == "lower") == (low is not None)


def bound_words(check: dict) -> tuple[str, str]:
    """(short, why): which value was compared, and why that end of the interval.

    ('lower 95% bound, the pessimistic end', 'the whole interval must clear the minimum')."""
    bound = check.get("bound")
    if bound not in ("lower", "upper"):
        return "the point estimate", "no interval is compared"
    name = f"{bound} {level(check)} bound"
    pessimistic = _pessimistic(check)
    if pessimistic is None:
        return name, "the end the policy names"
    side = "minimum" if check.get("min") is not None else "maximum"
    if pessimistic:
        must = "clear the minimum" if side == "minimum" else "stay under the maximum"
        return f"{name}, the pessimistic end", f"the whole interval must {must} for a pass"
    verb = _SEVERITY_VERB.get(check.get("severity"), "fails")
    where = "under the minimum" if side == "minimum" else "over the maximum"
    return f"{name}, the lenient end", f"it {verb} only where the whole interval is {where}"


def threshold_words(check: dict) -> str:
    """'≥ 0.15', '≤ 5', '≥ 0.1 and ≤ 0.9', plus the change tolerance against the baseline when there is one."""
    parts = []
    if check.get("min") is not None:
        parts.append(f"≥ {num(check['min'])}")
    if check.get("max") is not None:
        parts.append(f"≤ {num(check['max'])}")
    if check.get("change"):
        parts.append(f"change vs baseline {change_words(check['change'])}")
    return " and ".join(parts) or "–"


def not_shown(check: dict) -> str | None:
    """For a PASS whose point estimate is beyond the threshold (the lenient end of the interval reaches it):
    'not shown to be low (the interval reaches the threshold)'; None otherwise."""
    if check.get("outcome") != "PASS":
        return None
    value = check.get("observed")
    if value is None:
        return None
    if check.get("min") is not None and value < check["min"]:
        return "not shown to be low (the interval reaches the threshold)"
    if check.get("max") is not None and value > check["max"]:
        return "not shown to be high (the interval reaches the threshold)"
    return None


def sentence(check: dict, spec: dict | None = None) -> str:
    """One plain sentence on what the check found: the point estimate against the threshold, and what the
    compared end of the interval adds. Checks without a range (data checks, a change against a baseline,
    not judged, skipped) read as their message."""
    outcome = check.get("outcome")
    low, high = check.get("min"), check.get("max")
    value, compared = check.get("observed"), check.get("compared")
    if (outcome in ("NOT_JUDGED", "SKIPPED") or str(check.get("check_id", "")).startswith("data.")
            or (low is None and high is None) or value is None or compared is None):
        return _as_sentence(check)
    broken = (low is not None and compared < low) or (high is not None and compared > high)
    distrusted = outcome == "INCONCLUSIVE" and check.get("severity") != "inconclusive"
    if outcome in PROBLEMS and not broken and not distrusted:
        return _as_sentence(check)  # the change against the baseline failed, not the range
    what = _capital(quantity_words(check, spec))
    if low is not None and (value < low or compared < low):
        use_min = True
    elif high is not None and (value > high or compared > high):
        use_min = False
    else:
        use_min = low is not None
    limit = low if use_min else high
    beyond = value < limit if use_min else value > limit
    word, side, past = ("low", "below the minimum", "below") if use_min else ("high", "above the maximum", "above")
    within, inside = ("above the minimum", "above") if use_min else ("under the maximum", "under")
    bound = check.get("bound")
    end = f"the {bound} {level(check)} bound ({num(compared)})" if bound in ("lower", "upper") else None
    v, t = num(value), num(limit)
    pessimistic = _pessimistic(check)
    if broken:
        if not beyond:  # only the pessimistic end crosses
            text = f"{what} is {v}, {within} {t}, but not shown to be: {end} is {past} it (more samples may settle it)"
        elif end and pessimistic is False:
            text = f"{what} is {v}, {side} {t}, and shown to be {word}: even {end} is {past} it"
        elif end:
            text = f"{what} is {v}, {side} {t}; {end} is {past} it too"
        else:
            text = f"{what} is {v}, {side} {t}"
    elif beyond:  # a pass on the lenient end
        text = (f"Not shown to be {word} (the interval reaches the threshold): {what[0].lower()}{what[1:]} "
                f"is {v}, {side} {t}, but {end or 'the compared value'} reaches it")
    elif end and pessimistic:
        text = f"{what} is {v}, shown to be {within} {t}: even {end} is {inside} it"
    else:
        text = f"{what} is {v}, {within} {t}"
    if distrusted:
        text = f"Not trusted, the maps barely change when the weights are randomised: {text[0].lower()}{text[1:]}"
    return text + "."


def _as_sentence(check: dict) -> str:
    """The message without its leading 'check-id: ', capitalised."""
    message = str(check.get("message") or "")
    prefix = f"{check.get('check_id')}: "
    if message.startswith(prefix):
        message = message[len(prefix):]
    return _capital(message)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def caption_parts(facts: dict, escape=str) -> list[str]:
    """'true disc', 'predicted square (p = 0.97)', 'lift 0.52': a sample's caption in the overlay PNG and in
    report.html (``escape`` for the sink: class names are user text)."""
    parts = [f"true {escape(str(facts.get('true_name') or facts.get('class_name') or '?'))}"]
    if facts.get("predicted_name") is not None:
        confidence = f" (p = {facts['confidence']:.2f})" if facts.get("confidence") is not None else ""
        parts.append(f"predicted {escape(str(facts['predicted_name']))}{confidence}")
    if facts.get("lift") is not None:
        parts.append(f"lift {facts['lift']:.2f}")
    return parts
