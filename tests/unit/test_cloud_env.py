"""Terraform outputs -> .env (instore/cloudenv.py): the keys are Settings' own, the file is
private, the user's lines survive, and secrets can be masked out of any text."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from instore import cloudenv
from instore.settings import DEV_KEYS, Settings

FAKE_TF = Path(__file__).resolve().parents[1] / "fixtures" / "fake_terraform" / "terraform"


@pytest.fixture
def outputs() -> dict:
    # The stand-in's sample is exactly what `terraform output -json` prints for our outputs.
    namespace: dict = {}
    exec(compile(FAKE_TF.read_text(), str(FAKE_TF), "exec"), namespace)
    return json.loads(json.dumps(namespace["SAMPLE_OUTPUTS"]))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "KSQLDB_", "ABLY_", "API_KEY_", "INSTORE_", "REDIS_",
                            "CONFLUENT_", "SHOPPER_", "INSTORE_APP_ID")):
            monkeypatch.delenv(name)


def settings_from(path: Path) -> Settings:
    return Settings(_env_file=path)  # type: ignore[call-arg]


def test_env_makes_settings_point_at_confluent_cloud(tmp_path: Path, outputs: dict) -> None:
    env = cloudenv.cloud_env(outputs, ably_api_key="app.key:ablysecret-0123456789")
    path = tmp_path / ".env"
    cloudenv.write_private(path, cloudenv.render_env("", env))
    s = settings_from(path)
    assert s.environment == "production"
    assert s.kafka_bootstrap_servers == "pkc-stand1n.us-east-2.aws.confluent.cloud:9092"
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_sasl_mechanism == "PLAIN"
    assert s.kafka_sasl_username == "STANDINOPERATORKEY"
    assert s.kafka_sasl_password.get_secret_value() == "standin-operator-kafka-secret-value"
    assert s.kafka_replication_factor == 3 and s.kafka_partitions == 4
    assert s.app_id == "instore-stream"
    assert s.ksqldb_url == outputs["ksqldb_endpoint"]["value"]
    assert s.ksqldb_api_key == "STANDINKSQLKEY"
    assert s.ksqldb_api_secret.get_secret_value() == "standin-ksqldb-secret-value"
    assert s.ably_key == "app.key:ablysecret-0123456789"
    assert s.ably_rest_host is None and not s.push_hub_local  # real Ably
    for role, dev in DEV_KEYS.items():  # production refuses dev keys: real ones were made
        assert s.api_key(role) and s.api_key(role) != dev
    assert s.shopper_secret


def test_every_key_is_a_settings_field() -> None:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add((field.validation_alias or name).upper())
    outputs = json.loads(json.dumps({k: {"value": v} for k, v in {
        "kafka_bootstrap_servers": "b:9092", "kafka_partitions": 4,
        "kafka_replication_factor": 3, "stream_app_id": "x-stream",
        "kafka_api_keys": {"operator": {"key": "k", "secret": "s"}},
        "ksqldb_endpoint": "https://k", "ksqldb_api_key": {"key": "k", "secret": "s"}}.items()}))
    env = cloudenv.cloud_env(outputs, ably_api_key="a.b:c")
    assert set(env) <= names, set(env) - names


def test_workload_selects_its_key_and_only_the_operator_gets_ksqldb(outputs: dict) -> None:
    env = cloudenv.cloud_env(outputs, workload="edge")
    assert env["KAFKA_SASL_USERNAME"] == "STANDINEDGEKEY"
    assert "KSQLDB_API_SECRET" not in env and "KSQLDB_URL" not in env
    with pytest.raises(cloudenv.CloudEnvError, match="workload must be one of"):
        cloudenv.cloud_env(outputs, workload="ksqldb")


def test_missing_output_says_what_to_run(outputs: dict) -> None:
    del outputs["ksqldb_endpoint"]
    with pytest.raises(cloudenv.CloudEnvError, match="instore cloud up"):
        cloudenv.cloud_env(outputs)


def test_user_lines_survive_and_local_only_settings_go(tmp_path: Path, outputs: dict) -> None:
    before = ("# my settings\nREDIS_URL=redis://cache:6379/0\nKAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n"
              "ABLY_REST_HOST=127.0.0.1\nABLY_PORT=8090\nAPI_KEY_OPS=my-real-ops-key\n")
    env = cloudenv.cloud_env(outputs, user=cloudenv.parse_env(before))
    text = cloudenv.render_env(before, env)
    values = cloudenv.parse_env(text)
    assert values["REDIS_URL"] == "redis://cache:6379/0"
    assert values["KAFKA_BOOTSTRAP_SERVERS"].startswith("pkc-stand1n")
    assert "ABLY_REST_HOST" not in values and "ABLY_PORT" not in values
    assert values["API_KEY_OPS"] == "my-real-ops-key"  # the user's own key is not replaced
    assert "API_KEY_OPS" not in env
    assert text.count("KAFKA_BOOTSTRAP_SERVERS") == 1
    assert "# my settings" in text


def test_rewriting_keeps_generated_keys_and_down_strips_the_block(outputs: dict) -> None:
    first = cloudenv.render_env("X=1\n", cloudenv.cloud_env(outputs))
    again_env = cloudenv.cloud_env(outputs, user=cloudenv.parse_env(cloudenv.strip_block(first)),
                                   previous=cloudenv.block_values(first))
    second = cloudenv.render_env(first, again_env)
    assert cloudenv.parse_env(first)["API_KEY_MARKETER"] == \
        cloudenv.parse_env(second)["API_KEY_MARKETER"]
    assert second.count(cloudenv.BEGIN) == 1
    assert cloudenv.strip_block(second) == "X=1\n"


def test_values_round_trip_through_dotenv() -> None:
    odd = {"A": "plain", "B": "has space", "C": "it's", "D": 'quote"and\\slash', "E": "a#b"}
    assert {k: cloudenv.parse_env(cloudenv.render_env("", odd))[k] for k in odd} == odd


def test_write_private_is_0600_even_with_a_loose_umask(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    old = os.umask(0)
    try:
        cloudenv.write_private(path, "A=1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "A=1\n"
    assert [p.name for p in tmp_path.iterdir()] == [".env"]  # no temp file left behind


def test_secret_values_and_masks(outputs: dict) -> None:
    found = cloudenv.secret_values(outputs, extra=["app.key:ablysecret-0123456789", None])
    assert "standin-operator-kafka-secret-value" in found
    assert "standin-ksqldb-secret-value" in found
    assert "ablysecret-0123456789" in found  # the secret half of an Ably key on its own
    assert "pkc-stand1n.us-east-2.aws.confluent.cloud:9092" not in found  # not sensitive
    text = "x standin-edge-kafka-secret-value y ablysecret-0123456789 z"
    assert cloudenv.mask_text(text, found) == "x **** y **** z"
    shown = cloudenv.masked({"KAFKA_SASL_PASSWORD": "p", "KAFKA_SASL_USERNAME": "u"})
    assert shown == {"KAFKA_SASL_PASSWORD": "****", "KAFKA_SASL_USERNAME": "u"}
