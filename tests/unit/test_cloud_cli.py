"""`instore cloud plan|up|down|env|topics-tf` driving a STAND-IN terraform executable
(tests/fixtures/fake_terraform/terraform: it records its command lines and answers like the
real binary). Checks the command lines python-terraform builds, the confirmation, the .env
and its mode, and that no secret reaches the command line, stdout/stderr or the logs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instore import cloudenv
from instore.commands import cloud
from instore.commands.cloud.contract import CONTRACT_FILE
from instore.commands.cloud.variables import UNUSED_ABLY_KEY

REPO = Path(__file__).resolve().parents[2]
FAKE_DIR = REPO / "tests" / "fixtures" / "fake_terraform"
CC_KEY = "CCKEYSTANDIN0001"
CC_SECRET = "cc-secret-standin-value-0123456789"
ABLY_KEY = "appid1.keyid1:ably-secret-standin-value"
SECRETS = [CC_SECRET, ABLY_KEY, "ably-secret-standin-value", "standin-operator-kafka-secret-value",
           "standin-ksqldb-secret-value"]


class Rig:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tf_dir = root / "terraform"
        self.log = root / "terraform-calls.jsonl"
        self.migrate_log = root / "migrate.json"
        self.plugin = root / "kafka-connect-ably.zip"
        self.env_file = root / ".env"

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def commands(self) -> list[str]:
        return [c["argv"][0] for c in self.calls()]


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    r = Rig(tmp_path)
    r.tf_dir.mkdir()
    for path in (REPO / "terraform").iterdir():
        if path.suffix in (".tf", ".json"):
            shutil.copy(path, r.tf_dir / path.name)
    r.plugin.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip stands in for the plugin
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "KSQLDB_", "ABLY_", "API_KEY_", "INSTORE_", "REDIS_",
                            "CONFLUENT_", "SHOPPER_", "INSTORE_APP_ID", "FAKE_TF_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    # The stand-in runs with this interpreter, whatever the checkout did to its mode.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "terraform").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_DIR / "terraform"}" "$@"\n')
    (bin_dir / "terraform").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_TF_LOG", str(r.log))
    monkeypatch.setenv("CONFLUENT_CLOUD_API_KEY", CC_KEY)
    monkeypatch.setenv("CONFLUENT_CLOUD_API_SECRET", CC_SECRET)
    monkeypatch.setenv("ABLY_API_KEY", ABLY_KEY)
    # `instore ksql migrate` belongs to the ksql part: stand in with a child that records the
    # environment it was given.
    recorder = ("import json, os, sys; json.dump({k: os.environ.get(k) for k in "
                "('KSQLDB_URL', 'KSQLDB_API_KEY', 'KAFKA_BOOTSTRAP_SERVERS')}, "
                f"open({str(r.migrate_log)!r}, 'w')); print('migrations applied: 4')")
    monkeypatch.setattr(cloud, "MIGRATE_ARGV", (sys.executable, "-c", recorder))
    return r


def run(args: list[str], input: str | None = None):  # noqa: A002
    return CliRunner().invoke(cloud.app, args, input=input)


def everything_printed(result) -> str:
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_up_with_yes_plans_applies_writes_env_and_migrates(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="python_terraform")
    result = run(["up", "--yes", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 0, everything_printed(result)

    assert rig.commands() == ["init", "plan", "apply", "output"]
    init, plan, apply, output = (c["argv"] for c in rig.calls())
    assert init == ["init", "-input=false", "-no-color", "-backend=true"]
    assert "-detailed-exitcode" in plan and "-input=false" in plan
    out = next(a for a in plan if a.startswith("-out="))[len("-out="):]
    assert apply[-1] == out  # the confirmed plan is what gets applied
    assert "-var" not in " ".join(apply)  # a saved plan carries its variables
    assert output == ["output", "-json", "-no-color"]
    assert all(c["cwd"] == str(rig.tf_dir) for c in rig.calls())

    # Secrets travel in python-terraform's temporary var file (0600), never on argv.
    (var_file,) = rig.calls()[1]["var_files"].items()
    path, info = var_file
    assert info["mode"] == "0o600"
    assert info["values"]["confluent_cloud_api_secret"] == CC_SECRET
    assert info["values"]["ably_api_key"] == ABLY_KEY
    assert info["values"]["ably_connector_plugin_path"] == str(rig.plugin)
    assert not Path(path).exists()  # deleted after the command
    assert not Path(out).parent.exists()  # the saved plan (it holds secrets) is gone too
    for call in rig.calls():
        assert_no_secret(" ".join(call["argv"]))

    assert stat.S_IMODE(rig.env_file.stat().st_mode) == 0o600
    env = cloudenv.parse_env(rig.env_file.read_text())
    assert env["KAFKA_SASL_PASSWORD"] == "standin-operator-kafka-secret-value"
    assert env["KSQLDB_API_SECRET"] == "standin-ksqldb-secret-value"
    assert env["INSTORE_ENV"] == "production"

    migrate_env = json.loads(rig.migrate_log.read_text())
    assert migrate_env["KSQLDB_URL"] == env["KSQLDB_URL"]
    assert migrate_env["KAFKA_BOOTSTRAP_SERVERS"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert "migrations applied: 4" in everything_printed(result)

    assert "Plan: 61 to add" in result.stdout
    assert_no_secret(everything_printed(result))
    assert_no_secret(caplog.text)
    for key in ("API_KEY_MARKETER", "SHOPPER_TOKEN_SECRET", "KAFKA_SASL_PASSWORD"):
        assert env[key] not in everything_printed(result)
        assert env[key] not in caplog.text


def test_up_asks_and_no_means_nothing_applied(rig: Rig) -> None:
    result = run(["up", "--ably-plugin", str(rig.plugin)], input="n\n")
    assert result.exit_code == 1
    assert "Apply this plan?" in everything_printed(result)
    assert rig.commands() == ["init", "plan"]
    assert not rig.env_file.exists()
    assert not rig.migrate_log.exists()


def test_up_asks_and_yes_applies(rig: Rig) -> None:
    result = run(["up", "--ably-plugin", str(rig.plugin), "--skip-migrate"], input="y\n")
    assert result.exit_code == 0, everything_printed(result)
    assert rig.commands() == ["init", "plan", "apply", "output"]
    assert rig.env_file.exists() and not rig.migrate_log.exists()


def test_up_with_nothing_to_change_does_not_ask_or_apply(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TF_NO_CHANGES", "1")
    result = run(["up", "--ably-plugin", str(rig.plugin)], input="")
    assert result.exit_code == 0, everything_printed(result)
    assert rig.commands() == ["init", "plan", "output"]
    assert "nothing to change" in everything_printed(result)
    assert rig.env_file.exists()


def test_plan_only_plans(rig: Rig) -> None:
    result = run(["plan", "--no-ably-connector", "--cluster-type", "standard",
                  "--ksqldb-csu", "2"])
    assert result.exit_code == 0, everything_printed(result)
    assert rig.commands() == ["init", "plan"]
    assert not any(a.startswith("-out=") for a in rig.calls()[1]["argv"])
    (info,) = rig.calls()[1]["var_files"].values()
    assert info["values"]["kafka_cluster_type"] == "standard"
    assert info["values"]["ksqldb_csu"] == 2
    assert info["values"]["ably_connector_enabled"] is False
    assert "changes pending" in everything_printed(result)


def test_missing_terraform_says_how_to_get_it(rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run(["plan"])
    assert result.exit_code == 1
    text = " ".join(everything_printed(result).split())
    assert "developer.hashicorp.com/terraform/install" in text
    assert rig.calls() == []


def test_missing_credentials_say_how_to_get_them(rig: Rig,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONFLUENT_CLOUD_API_SECRET")
    result = run(["up", "--yes", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 1
    text = " ".join(everything_printed(result).split())
    assert "CONFLUENT_CLOUD_API_SECRET" in text and "api-key create --resource cloud" in text
    assert rig.calls() == []


def test_missing_ably_key_or_plugin_is_explained(rig: Rig,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(["plan"])  # no --ably-plugin and no terraform.tfvars
    assert result.exit_code == 1
    assert "--ably-plugin" in " ".join(everything_printed(result).split())
    monkeypatch.delenv("ABLY_API_KEY")
    result = run(["plan", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 1
    assert "ABLY_API_KEY" in everything_printed(result)
    assert rig.calls() == []
    # With the connector off, neither is needed.
    result = run(["plan", "--no-ably-connector"])
    assert result.exit_code == 0, everything_printed(result)


def test_tfvars_plugin_path_is_honoured(rig: Rig) -> None:
    (rig.tf_dir / "terraform.tfvars").write_text(
        f'ably_connector_plugin_path = "{rig.plugin}"\nregion = "eu-west-1"\n')
    result = run(["plan"])
    assert result.exit_code == 0, everything_printed(result)
    (info,) = rig.calls()[1]["var_files"].values()
    assert "region" not in info["values"]  # Terraform reads terraform.tfvars itself


def test_terraform_failure_is_reported_masked(rig: Rig, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    # A stand-in that fails and echoes a secret on stderr: we must print the error masked.
    leaky = tmp_path / "leaky-bin"
    leaky.mkdir()
    script = leaky / "terraform"
    script.write_text(
        "#!/bin/sh\n"
        "# STAND-IN terraform that fails plan and leaks a secret on stderr\n"
        f'if [ "$1" = plan ]; then echo "Error: bad secret {CC_SECRET}" >&2; exit 1; fi\n'
        "exit 0\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{leaky}{os.pathsep}{os.environ['PATH']}")
    result = run(["up", "--yes", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 1
    printed = everything_printed(result)
    assert "terraform plan failed" in printed and "Error: bad secret ****" in printed
    assert_no_secret(printed)


def test_down_destroys_after_confirmation_and_cleans_env(rig: Rig) -> None:
    assert run(["up", "--yes", "--skip-migrate", "--ably-plugin", str(rig.plugin)]).exit_code == 0
    rig.env_file.write_text("MY_OWN=1\n" + rig.env_file.read_text())
    rig.log.unlink()

    result = run(["down"], input="n\n")
    assert result.exit_code == 1
    assert rig.commands() == ["init", "plan"] and "-destroy" in rig.calls()[1]["argv"]
    assert "KAFKA_SASL_PASSWORD" in rig.env_file.read_text()

    rig.log.unlink()
    result = run(["down"], input="y\n")
    assert result.exit_code == 0, everything_printed(result)
    assert rig.commands() == ["init", "plan", "apply"]
    plan, apply = rig.calls()[1]["argv"], rig.calls()[2]["argv"]
    assert "-destroy" in plan
    assert apply[-1] == next(a for a in plan if a.startswith("-out="))[len("-out="):]
    assert rig.env_file.read_text() == "MY_OWN=1\n"
    assert stat.S_IMODE(rig.env_file.stat().st_mode) == 0o600
    assert_no_secret(everything_printed(result))


def test_down_needs_no_ably_key_or_plugin(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABLY_API_KEY")
    result = run(["down", "--yes"])
    assert result.exit_code == 0, everything_printed(result)
    (info,) = rig.calls()[1]["var_files"].values()
    assert info["values"]["ably_api_key"] == UNUSED_ABLY_KEY


def test_env_writes_the_chosen_workload(rig: Rig) -> None:
    result = run(["env", "--workload", "edge"])
    assert result.exit_code == 0, everything_printed(result)
    assert rig.commands() == ["output"]
    env = cloudenv.parse_env(rig.env_file.read_text())
    assert env["KAFKA_SASL_USERNAME"] == "STANDINEDGEKEY"
    assert "KSQLDB_API_SECRET" not in env
    assert "standin-edge-kafka-secret-value" not in everything_printed(result)
    assert stat.S_IMODE(rig.env_file.stat().st_mode) == 0o600

    result = run(["env", "--workload", "nobody"])
    assert result.exit_code == 1


def test_env_before_up_says_run_up(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = rig.root / "no-outputs.json"
    empty.write_text("{}")
    monkeypatch.setenv("FAKE_TF_OUTPUTS", str(empty))
    result = run(["env"])
    assert result.exit_code == 1
    assert "instore cloud up" in everything_printed(result)
    assert not rig.env_file.exists()


def test_topics_tf_check_and_regenerate(rig: Rig) -> None:
    assert run(["topics-tf", "--check"]).exit_code == 0
    contract = rig.tf_dir / CONTRACT_FILE
    contract.write_text(contract.read_text().replace('"partitions": 1', '"partitions": 2'))
    result = run(["topics-tf", "--check"])
    assert result.exit_code == 1 and "out of date" in everything_printed(result)
    result = run(["up", "--yes", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 1 and rig.calls() == []  # never plan a stale contract
    assert run(["topics-tf"]).exit_code == 0
    assert run(["topics-tf", "--check"]).exit_code == 0
    assert contract.read_text() == (REPO / "terraform" / CONTRACT_FILE).read_text()


def test_apply_streams_terraforms_progress_lines_masked(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["confluent_kafka_cluster.main: Creating...",
             f"confluent_ksql_cluster.main: Still creating... [10s elapsed] {CC_SECRET}",
             "confluent_ksql_cluster.main: Creation complete after 4m2s"]
    monkeypatch.setenv("FAKE_TF_APPLY_LINES", "|".join(lines))
    result = run(["up", "--yes", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 0, everything_printed(result)
    out = everything_printed(result)
    positions = [out.index(line.split(" [")[0]) for line in lines]
    assert positions == sorted(positions)  # in Terraform's order
    assert "Still creating... [10s elapsed]" in out and "Apply complete!" in out
    assert_no_secret(out)


def test_a_failing_apply_says_so_with_terraforms_last_lines(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TF_APPLY_FAIL", "1")
    result = run(["up", "--yes", "--ably-plugin", str(rig.plugin)])
    assert result.exit_code == 1
    out = everything_printed(result)
    assert "terraform apply failed (exit 1)" in out and "403 Forbidden" in out
    assert "cloud is up" not in out and "Traceback" not in out
