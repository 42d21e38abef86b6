"""The house: one list of methods and aggregates, and the layers import one way."""

from __future__ import annotations

import subprocess
import sys

from validator import cli
from validator.explain.names import METHOD_NAMES
from validator.policy import model as policy_model
from validator.policy.wording import _AGGREGATE_WORDS
from validator.stats import AGGREGATES, BOOTSTRAPPED


def test_one_list_of_method_names():
    from validator.explain.methods import METHODS

    assert tuple(METHODS) == METHOD_NAMES
    assert policy_model.METHODS is METHOD_NAMES and cli.METHOD_CHOICES is METHOD_NAMES


def test_one_list_of_aggregates_and_every_one_has_words():
    assert policy_model.AGGREGATES is AGGREGATES
    assert set(BOOTSTRAPPED) | {"rate"} == set(AGGREGATES)
    assert set(_AGGREGATE_WORDS) == set(BOOTSTRAPPED)  # "rate" is worded by quantity() itself


def test_policy_and_cli_modules_do_not_import_tensorflow():
    code = ("import sys; import validator.policy, validator.cli, validator.explain.names; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
