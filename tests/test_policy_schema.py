"""Policy loading: every refusal names file, line, key path and, where it can, the closest valid name."""

from __future__ import annotations

import textwrap
from datetime import date

import pytest

from validator.errors import PolicyError, UsageError
from validator.explain.names import METHOD_OPTIONS
from validator.policy import load_policy

BASE = """\
name: t
version: 1
checks:
  - id: object-heat
    metric: lift
    min: 1.5
"""


def write(tmp_path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def refuse(tmp_path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_policy_error_is_a_usage_error_with_exit_code_2():
    assert issubclass(PolicyError, UsageError) and PolicyError.exit_code == 2


def test_minimal_policy_fills_defaults():
    policy = load_policy(BASE_DICT())
    check = policy.checks[0]
    assert (check.aggregate, check.bound, check.severity, check.slices) == ("mean", "point", "fail", "overall")
    assert check.min == 1.5 and check.max is None and check.change is None
    assert check.min_samples == 30  # defaults to sample.min_per_class
    assert check.on_missing == "fail"
    assert policy.explainer.method == "gradcam" and policy.sample.max_samples == 200
    assert policy.on_missing_baseline == "skip" and policy.waivers == ()


def BASE_DICT():
    return {"name": "t", "version": 1, "checks": [{"id": "object-heat", "metric": "lift", "min": 1.5}]}


def test_unknown_check_key_names_line_path_and_suggestion(tmp_path):
    message = refuse(tmp_path, """\
        name: t
        version: 1
        checks:
          - id: a
            metric: lift
            min: 1.5
          - id: b
            metirc: lift
            min: 1.5
        """)
    assert "line 8" in message
    assert "checks[1].metirc" in message
    assert "did you mean 'metric'?" in message


def test_unknown_metric_suggests_closest(tmp_path):
    message = refuse(tmp_path, BASE.replace("metric: lift", "metric: lfit"))
    assert "line 5" in message and "checks[0].metric" in message
    assert "unknown metric 'lfit'" in message and "did you mean 'lift'?" in message


def test_unknown_aggregate_method_and_top_level_key_suggest(tmp_path):
    message = refuse(tmp_path, BASE + "    aggregate: maen\n")
    assert "line 7" in message and "checks[0].aggregate" in message and "did you mean 'mean'?" in message
    message = refuse(tmp_path, BASE + "explainer:\n  method: gradcm\n")
    assert "line 8" in message and "explainer.method" in message and "did you mean 'gradcam'?" in message
    message = refuse(tmp_path, BASE + "waviers: []\n")
    assert "line 7" in message and "waviers" in message and "did you mean 'waivers'?" in message


def test_waiver_with_unknown_check_id_suggests(tmp_path):
    message = refuse(tmp_path, BASE + """\
waivers:
  - {check: object-heta, reason: "ML-1", expires: 2030-01-01}
""")
    assert "line 8" in message and "waivers[0].check" in message
    assert "did you mean 'object-heat'?" in message


def test_waiver_may_name_a_builtin_data_check(tmp_path):
    path = write(tmp_path, BASE + "waivers:\n  - {check: data.skipped, reason: r, expires: 2030-01-01}\n")
    waiver = load_policy(path).waivers[0]
    assert waiver.check == "data.skipped" and waiver.slice is None and waiver.expires == date(2030, 1, 1)


def test_expires_must_be_a_date(tmp_path):
    message = refuse(tmp_path, BASE + "waivers:\n  - {check: object-heat, reason: r, expires: someday}\n")
    assert "waivers[0].expires" in message and "must be a date" in message


def test_wrong_type_is_refused(tmp_path):
    message = refuse(tmp_path, BASE.replace("min: 1.5", "min: high"))
    assert "line 6" in message and "checks[0].min" in message and "must be a number" in message
    message = refuse(tmp_path, BASE.replace("min: 1.5", "min: true"))
    assert "must be a number" in message
    message = refuse(tmp_path, BASE + "sample: {min_samples: 1.5}\n")
    assert "sample.min_samples" in message and "must be an integer" in message


def test_threshold_outside_metric_range(tmp_path):
    message = refuse(tmp_path, BASE.replace("metric: lift", "metric: energy"))
    assert "checks[0].min" in message and "1.5 is outside the range of energy [0, 1]" in message


def test_rate_bounds_must_be_shares(tmp_path):
    text = BASE.replace("min: 1.5", "aggregate: rate\n    threshold: 1.0\n    min: 1.5")
    assert "outside the range of a rate [0, 1]" in refuse(tmp_path, text)


def test_min_greater_than_max(tmp_path):
    message = refuse(tmp_path, BASE.replace("min: 1.5", "min: 2.0\n    max: 1.0"))
    assert "checks[0].min" in message and "min 2 is greater than max 1" in message


def test_threshold_rules(tmp_path):
    boolean = BASE.replace("metric: lift", "metric: dead").replace(
        "min: 1.5", "aggregate: rate\n    threshold: 0.5\n    max: 0.1")
    message = refuse(tmp_path, boolean)
    assert "checks[0].threshold" in message and "'dead' is boolean" in message
    no_threshold = BASE.replace("min: 1.5", "aggregate: rate\n    min: 0.5")
    assert "needs a threshold" in refuse(tmp_path, no_threshold)
    not_rate = BASE.replace("min: 1.5", "threshold: 1.0\n    min: 1.5")
    assert "only used with aggregate 'rate'" in refuse(tmp_path, not_rate)


def test_check_needs_a_limit(tmp_path):
    assert "needs min, max or change" in refuse(tmp_path, BASE.replace("    min: 1.5\n", ""))


def test_duplicate_check_ids_and_duplicate_yaml_keys(tmp_path):
    message = refuse(tmp_path, BASE + "  - id: object-heat\n    metric: lift\n    min: 1.0\n")
    assert "line 7" in message and "checks[1].id" in message and "duplicate check id 'object-heat'" in message
    message = refuse(tmp_path, BASE + "    min: 2.0\n")
    assert "line 7" in message and "duplicate key 'min'" in message


def test_builtin_ids_are_reserved_and_ids_have_a_pattern(tmp_path):
    assert "built-in data check" in refuse(tmp_path, BASE.replace("id: object-heat", "id: data.skipped"))
    assert "must match" in refuse(tmp_path, BASE.replace("id: object-heat", "id: Object Heat"))


def test_not_yaml_empty_missing_and_not_a_mapping(tmp_path):
    message = refuse(tmp_path, "name: t\nchecks: [unclosed\nversion: 1\n")
    assert "not valid YAML" in message and "line" in message
    assert "is empty" in refuse(tmp_path, "\n  \n")
    assert "top level must be a mapping" in refuse(tmp_path, "just some words\n")
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(tmp_path / "absent.yaml")
    binary = tmp_path / "model.keras"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00\x81")
    with pytest.raises(PolicyError, match="not a text file"):
        load_policy(binary)


def test_required_keys(tmp_path):
    assert "required key 'name' is missing" in refuse(tmp_path, BASE.replace("name: t\n", ""))
    assert "required key 'version' is missing" in refuse(tmp_path, BASE.replace("version: 1\n", ""))
    assert "must be an integer or a string" in refuse(tmp_path, BASE.replace("version: 1", "version: true"))
    assert "required key 'metric' is missing" in refuse(tmp_path, BASE.replace("    metric: lift\n", ""))


def test_region_metrics_need_a_declared_region(tmp_path):
    text = BASE.replace("metric: lift", "metric: region_logo").replace("min: 1.5", "max: 0.2")
    message = refuse(tmp_path, text)
    assert "unknown metric 'region_logo'" in message and "declare region 'logo'" in message
    policy = load_policy(write(tmp_path, text + "regions:\n  logo: [0.8, 0.8, 1.0, 1.0]\n"))
    assert policy.regions == {"logo": (0.8, 0.8, 1.0, 1.0)} and policy.checks[0].metric == "region_logo"
    bad = text + "regions:\n  logo: [0.8, 0.8, 0.5, 1.0]\n"
    assert "x0 < x1" in refuse(tmp_path, bad)


def test_change_rules(tmp_path):
    both = BASE.replace("min: 1.5", "change: {absolute: -0.05, relative: -0.1}")
    assert "exactly one of absolute or relative" in refuse(tmp_path, both)
    typo = BASE.replace("min: 1.5", "change: {absolut: -0.05}")
    assert "checks[0].change.absolut" in refuse(tmp_path, typo)
    assert "did you mean 'absolute'?" in refuse(tmp_path, typo)
    no_direction = BASE.replace("metric: lift", "metric: area").replace("min: 1.5", "change: {absolute: 0.1}")
    assert "no better direction" in refuse(tmp_path, no_direction)
    policy = load_policy(write(tmp_path, BASE.replace("min: 1.5", "change: {relative: -0.1}")))
    assert policy.checks[0].change == {"relative": -0.1}


def test_slices_and_classes(tmp_path):
    text = "classes: [cat, dog]\n" + BASE + "    slices: [cat, dgo]\n"
    message = refuse(tmp_path, text)
    assert "checks[0].slices[1]" in message and "did you mean 'dog'?" in message
    assert "did you mean 'per_class'?" in refuse(tmp_path, BASE + "    slices: perclass\n")
    waiver = "classes: [cat, dog]\n" + BASE + "waivers:\n  - {check: object-heat, slice: cat, reason: r, expires: 2030-01-01}\n"
    assert "'class=<name>'" in refuse(tmp_path, waiver)
    policy = load_policy(write(tmp_path, "classes: [cat, dog]\n" + BASE + "    slices: [dog]\n"))
    assert policy.classes == ("cat", "dog") and policy.checks[0].slices == ("dog",)


def test_on_missing_defaults_to_severity():
    raw = BASE_DICT()
    raw["checks"][0]["severity"] = "warn"
    assert load_policy(raw).checks[0].on_missing == "warn"
    raw["checks"][0]["on_missing"] = "fail"
    assert load_policy(raw).checks[0].on_missing == "fail"


def test_dict_errors_name_the_key_path():
    raw = BASE_DICT()
    raw["checks"][0]["bound"] = "lowr"
    with pytest.raises(PolicyError, match=r"<dict>: checks\[0\]\.bound: unknown value 'lowr' \(did you mean 'lower'\?\)"):
        load_policy(raw)


def test_content_hash_ignores_layout_and_follows_content(tmp_path):
    from_yaml = load_policy(write(tmp_path, "# comment\n" + BASE))
    from_dict = load_policy(BASE_DICT())
    assert from_yaml.content_hash == from_dict.content_hash
    assert len(from_dict.content_hash) == 12 and int(from_dict.content_hash, 16) >= 0
    changed = BASE_DICT()
    changed["checks"][0]["min"] = 1.6
    assert load_policy(changed).content_hash != from_dict.content_hash
    assert load_policy(from_dict.to_dict()) == from_dict  # to_dict round-trips through the schema


def with_explainer(method: str, options: dict) -> dict:
    raw = BASE_DICT()
    raw["explainer"] = {"method": method, "options": options}
    return raw


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_every_method_accepts_its_own_defaults(method):
    policy = load_policy(with_explainer(method, dict(METHOD_OPTIONS[method])))
    assert dict(policy.explainer.options) == METHOD_OPTIONS[method]
    assert load_policy(policy.to_dict()) == policy


def test_augmented_gradcam_fill_is_a_checked_choice(tmp_path):
    for fill in ("reflect", "zeros"):
        assert dict(load_policy(with_explainer("augmented_gradcam", {"fill": fill})).explainer.options) == {"fill": fill}
    message = refuse(tmp_path, BASE + "explainer:\n  method: augmented_gradcam\n  options:\n    fill: reflct\n")
    assert "line 10" in message and "explainer.options.fill" in message
    assert "must be one of reflect, zeros, got 'reflct'" in message and "did you mean 'reflect'?" in message
    with pytest.raises(PolicyError, match=r"explainer\.options\.fill: must be one of reflect, zeros, got 3"):
        load_policy(with_explainer("augmented_gradcam", {"fill": 3}))
    with pytest.raises(PolicyError, match=r"explainer\.options\.baseline: must be one of black, blur, got 'grey'"):
        load_policy(with_explainer("integrated_gradients", {"baseline": "grey"}))


def test_scorecam_max_channels_null_means_every_channel():
    policy = load_policy(with_explainer("scorecam", {"max_channels": None}))
    assert policy.explainer.options == (("max_channels", None),)
    assert load_policy(policy.to_dict()) == policy
    assert load_policy(with_explainer("scorecam", {"max_channels": 0})).explainer.options == (("max_channels", 0),)
    for bad in (-1, 2.5, "all", True):
        with pytest.raises(PolicyError, match=r"explainer\.options\.max_channels: must be an integer >= 0 or null"):
            load_policy(with_explainer("scorecam", {"max_channels": bad}))


@pytest.mark.parametrize(
    ("method", "options", "match"),
    [("smoothgrad", {"samples": None}, r"samples: must not be null \(the default is 25\)"),
     ("smoothgrad", {"samples": 0}, r"samples: must be >= 1, got 0"),
     ("integrated_gradients", {"steps": 0}, r"steps: must be >= 1"),
     ("augmented_gradcam", {"views": 0}, r"views: must be >= 1"),
     ("augmented_gradcam", {"views": 16.0}, r"views: must be an integer"),
     ("augmented_gradcam", {"learning_rate": 0}, r"learning_rate: must be > 0"),
     ("augmented_gradcam", {"tv": -0.1}, r"tv: -0.1 is outside a non-negative number"),
     ("augmented_gradcam", {"smoothing": 1}, r"unknown key 'smoothing' in options of method 'augmented_gradcam'"),
     ("occlusion", {"patch": 1.5}, r"patch: 1.5 is outside a fraction of the image side \[0, 1\]"),
     ("occlusion", {"stride": 0}, r"stride: must be > 0")],
)
def test_bad_explainer_options_are_refused_with_the_key_path(method, options, match):
    with pytest.raises(PolicyError, match=match):
        load_policy(with_explainer(method, options))


def test_policy_options_reach_the_engine_as_the_engine_reads_them():
    """What the schema accepts, the methods accept: null max_channels is every channel, fill a known fill."""
    from validator.explain.augmented import validate_options
    from validator.explain.scorecam import max_channels_option

    assert max_channels_option(dict(load_policy(with_explainer("scorecam", {"max_channels": None}))
                                    .explainer.options)["max_channels"]) is None
    options = dict(load_policy(with_explainer("augmented_gradcam", {"fill": "zeros", "views": 4})).explainer.options)
    assert validate_options({**METHOD_OPTIONS["augmented_gradcam"], **options})["fill"] == "zeros"


@pytest.mark.parametrize(("extra", "expected"), [
    ("    with_masks: {max: 2.0}\n", "checks[0].with_masks.max: the check has no max for the mask limit to replace"),
    ("    with_masks: {}\n", "checks[0].with_masks: give min and/or max"),
    ("    with_masks: {mn: 1.0}\n", "'mn'"),
    ("    max: 1.8\n    with_masks: {min: 1.9}\n", "checks[0].with_masks.min: min 1.9 is greater than max 1.8"),
    ("    with_masks: 1.0\n", "checks[0].with_masks"),
])
def test_with_masks_refusals_name_the_key(tmp_path, extra, expected):
    message = refuse(tmp_path, BASE.replace("    min: 1.5\n", "    min: 1.5\n" + extra))
    assert expected in message, message
