"""`camgate serve` config errors name file, line and key; the webhook signature is MLflow's own."""

from __future__ import annotations

import pytest

from validator.errors import ConfigError, UsageError
from validator.serve.config import load_config
from validator.serve.signature import sign, verify


def _write(tmp_path, text):
    (tmp_path / "data.json").write_text("{}")
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


GOOD = """secret_env: CAMGATE_WEBHOOK_SECRET
models:
  shapes:
    data: data.json
    baseline: champion
    promote: champion
    options: {max_samples: 60, seed: 0}
"""


def test_a_valid_config_resolves_paths_beside_it(tmp_path, monkeypatch):
    config = load_config(_write(tmp_path, GOOD))
    model = config.models["shapes"]
    assert model.data == str(tmp_path / "data.json") and model.promote == "champion"
    assert model.options == {"max_samples": 60, "seed": 0}
    assert config.state == str(tmp_path / "camgate-serve.db") and config.concurrency == 1
    monkeypatch.delenv("CAMGATE_WEBHOOK_SECRET", raising=False)
    with pytest.raises(UsageError, match=r"\$CAMGATE_WEBHOOK_SECRET is not set"):
        config.secret()
    monkeypatch.setenv("CAMGATE_WEBHOOK_SECRET", "s3")
    assert config.secret() == "s3"


@pytest.mark.parametrize("text, line, needle", [
    (GOOD.replace("    promote: champion", "    promte: champion"), 6, "unknown key 'promte'.*did you mean 'promote'"),
    (GOOD.replace("promote: champion", "promote: latest"), 6, "models.shapes.promote: 'latest' is not a registry alias"),
    (GOOD.replace("data: data.json", "data: missing.json"), 4, "models.shapes.data: .*missing.json does not exist"),
    (GOOD.replace("max_samples: 60", "max_samples: many"), 7, "max_samples: must be an integer"),
    (GOOD.replace("secret_env: CAMGATE_WEBHOOK_SECRET", "secret_env: 'hunter2!'"), 1, "not an environment variable"),
    (GOOD + "concurrency: 0\n", 8, "concurrency: must be >= 1"),
    (GOOD + "models: {}\n", 8, "duplicate key 'models'"),
    ("secret_env: X\nmodels: {}\n", 2, "models: must map at least one"),
    ("secret_env: X\nmodels: [\n", 3, "not valid YAML"),
])
def test_errors_name_the_line_and_key(tmp_path, text, line, needle):
    with pytest.raises(ConfigError, match=rf"^config .*serve.yaml, line {line}:.*{needle}"):
        load_config(_write(tmp_path, text))


def test_a_bad_policy_named_by_the_config_is_reported_with_its_own_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nversion: 1\nchecks:\n  - {id: a, metric: nope}\n")
    text = GOOD.replace("    baseline: champion", "    policy: bad.yaml")
    with pytest.raises(ConfigError, match=r"line 5: models.shapes.policy: policy .*bad.yaml, line 4"):
        load_config(_write(tmp_path, text))


def test_signature_matches_mlflows_own_signing_function():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = '{"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}'
    expected = _generate_hmac_signature("secret", "d-1", "1700000000", body)
    assert sign("secret", "d-1", "1700000000", body.encode()) == expected
    assert verify("secret", "d-1", "1700000000", body.encode(), expected)
    assert verify("secret", "d-1", "1700000000", body.encode(), "v1,bogus " + expected)  # any listed one
    for secret, delivery, stamp, payload in (("other", "d-1", "1700000000", body), ("secret", "d-2", "1700000000", body),
                                             ("secret", "d-1", "1700000001", body), ("secret", "d-1", "1700000000", body + " ")):
        assert not verify(secret, delivery, stamp, payload.encode(), expected)
    assert not verify("secret", "d-1", "1700000000", body.encode(), None)
    assert not verify("", "d-1", "1700000000", body.encode(), expected)
