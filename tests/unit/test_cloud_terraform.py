"""The Terraform configuration in terraform/, read with python-hcl2 (no binary, no provider):
it covers the whole topic contract, its variables and outputs are typed and safe, the Ably
sink reads `offers` into per-shopper channels, and no secret is written anywhere."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from instore import topics as t
from instore.channels import shopper_channel
from instore.commands.cloud.contract import CONTRACT_FILE, WORKLOAD_ACCESS, render_contract

TF_DIR = Path(__file__).resolve().parents[2] / "terraform"
SECRET_WORDS = ("key", "secret", "password", "token")


def unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@functools.cache
def parsed() -> tuple[dict[str, Any], ...]:
    docs = []
    for path in sorted(TF_DIR.glob("*.tf")):
        with path.open() as fh:
            docs.append(hcl2.load(fh))
    return tuple(docs)


def blocks(kind: str) -> dict[str, Any]:
    """Every `kind` block (variable, output, ...) of every .tf file, by unquoted label."""
    found: dict[str, Any] = {}
    for doc in parsed():
        for block in doc.get(kind, []):
            for label, body in block.items():
                found[unquote(label)] = body
    return found


def resources(rtype: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for doc in parsed():
        for block in doc.get("resource", []):
            for label, named in block.items():
                if unquote(label) == rtype:
                    for name, body in named.items():
                        found[unquote(name)] = body
    return found


def contract_locals() -> dict[str, Any]:
    return json.loads((TF_DIR / CONTRACT_FILE).read_text())["locals"]


def test_every_tf_file_parses() -> None:
    files = sorted(TF_DIR.glob("*.tf"))
    assert {f.name for f in files} >= {"versions.tf", "variables.tf", "main.tf", "topics.tf",
                                        "acls.tf", "ksqldb.tf", "ably_connector.tf", "outputs.tf"}
    for path in files:
        with path.open() as fh:
            assert isinstance(hcl2.load(fh), dict), path


def test_contract_file_is_generated_from_topics_py() -> None:
    text = (TF_DIR / CONTRACT_FILE).read_text()
    partitions = json.loads(text)["locals"]["default_partitions"]
    assert text == render_contract(partitions), "run `instore cloud topics-tf`"


def test_every_contract_topic_has_a_confluent_kafka_topic() -> None:
    topic = resources("confluent_kafka_topic")["contract"]
    assert topic["for_each"] == "${local.contract_topics}"
    assert topic["topic_name"] == "${each.key}"
    assert topic["partitions_count"] == "${each.value.partitions}"
    assert topic["config"] == "${each.value.config}"

    local = contract_locals()
    default = local["default_partitions"]
    declared = local["contract_topics"]
    assert set(declared) == {tp.name for tp in t.ALL}
    for tp in t.ALL:
        entry = declared[tp.name]
        assert entry["partitions"] == t.partitions_of(tp, default), tp.name
        assert entry["config"]["cleanup.policy"] == ("compact" if tp.compacted else "delete")
        assert entry["config"] == tp.config(), tp.name
    assert declared[t.DEAD_LETTERS.name]["partitions"] == 1
    assert "retention.ms" not in declared[t.SHOPPER_CONSENTS.name]["config"]


def test_default_partitions_match_the_ksql_migrations() -> None:
    # ksqlDB refuses CREATE ... WITH (PARTITIONS=n) on an existing topic with another count.
    local = contract_locals()
    ksql_dir = TF_DIR.parent / "ksql"
    counts = {int(m) for f in ksql_dir.rglob("*.sql")
              for m in re.findall(r"PARTITIONS\s*=\s*(\d+)", f.read_text(), flags=re.I)}
    assert counts <= {local["default_partitions"]}


def test_every_variable_is_typed_described_and_secrets_are_sensitive_without_default() -> None:
    variables = blocks("variable")
    assert {"confluent_cloud_api_key", "confluent_cloud_api_secret", "ably_api_key",
            "kafka_cluster_type", "ksqldb_csu"} <= set(variables)
    for name, body in variables.items():
        assert body.get("type"), f"{name} has no type"
        assert unquote(body.get("description", "")).strip(), f"{name} has no description"
        if any(word in name for word in SECRET_WORDS):
            assert body.get("sensitive") is True, f"{name} must be sensitive"
            assert "default" not in body, f"{name} must have no default"
        if "default" in body and body.get("type") in ("string", "number"):
            assert body.get("validation"), f"{name} has a default but no validation"


def test_cluster_type_and_csu_are_variables() -> None:
    cluster = resources("confluent_kafka_cluster")["main"]
    for kind in ("basic", "standard", "dedicated"):
        (block,) = [d for d in cluster["dynamic"] if unquote(next(iter(d))) == kind]
        assert "var.kafka_cluster_type" in json.dumps(block)
    ksql = resources("confluent_ksql_cluster")["main"]
    assert ksql["csu"] == "${var.ksqldb_csu}"
    assert ksql["use_detailed_processing_log"] is False  # positions are personal data
    env = resources("confluent_environment")["main"]
    assert env["stream_governance"][0]["package"] == "${var.stream_governance_package}"


def test_outputs_cover_env_and_keys_are_sensitive() -> None:
    outputs = blocks("output")
    assert {"kafka_bootstrap_servers", "kafka_api_keys", "ksqldb_endpoint", "ksqldb_api_key",
            "schema_registry_url"} <= set(outputs)
    for name, body in outputs.items():
        assert unquote(body.get("description", "")).strip(), f"output {name} has no description"
        if ".secret" in json.dumps(body.get("value")):
            assert body.get("sensitive") is True, f"output {name} exposes a secret"
    assert outputs["kafka_api_keys"]["sensitive"] is True
    assert outputs["ksqldb_api_key"]["sensitive"] is True


def test_ably_connector_reads_offers_into_per_shopper_channels() -> None:
    local = contract_locals()["push_connector"]
    plugin = resources("confluent_custom_connector_plugin")["ably"]
    assert unquote(plugin["connector_class"]) == "com.ably.kafka.connect.ChannelSinkConnector"
    assert unquote(plugin["connector_type"]) == "SINK"
    assert '"client.key"' in plugin["sensitive_config_properties"]

    connector = resources("confluent_connector")["ably_sink"]
    plain = {unquote(k): unquote(v) for k, v in connector["config_nonsensitive"].items()}
    secret = {unquote(k): v for k, v in connector["config_sensitive"].items()}
    assert plain["topics"] == "${local.push_connector.source_topic}"
    assert local["source_topic"] == t.OFFERS.name
    assert plain["channel"] == shopper_channel("#{key}")  # the contract's name; offers are keyed by uid
    assert t.OFFERS.key_fields == ("uid",)
    assert plain["errors.deadletterqueue.topic.name"] == "${local.push_connector.dead_letter_topic}"
    assert local["dead_letter_topic"] == t.DEAD_LETTERS.name
    assert plain["onFailedRecordMapping"] == "dlq"
    assert plain["errors.tolerance"] == "all"
    assert plain["confluent.connector.type"] == "CUSTOM"
    assert plain["confluent.custom.connection.endpoints"] == "${var.ably_rest_endpoint}:TCP"
    assert unquote(blocks("variable")["ably_rest_endpoint"]["default"]) == "rest.ably.io:443"
    assert secret["client.key"] == "${var.ably_api_key}"
    assert "client.key" not in plain
    assert not any(k in plain for k in ("kafka.api.secret", "kafka.api.key"))


def test_acls_name_only_contract_topics_and_known_workloads() -> None:
    local = contract_locals()
    access = local["workload_access"]
    with (TF_DIR / "service_accounts.tf").open() as fh:
        declared = hcl2.load(fh)["locals"][0]["workloads"]
    assert set(access) == set(declared)
    contract = {tp.name for tp in t.ALL}
    for workload, grants in access.items():
        assert set(grants) == {"read", "write"}
        assert set(grants["read"]) <= contract and set(grants["write"]) <= contract, workload
    # Least privilege: only the operator touches every topic; edge producers read nothing.
    assert access["edge"]["read"] == []
    assert access["push_connector"] == {"read": [t.OFFERS.name], "write": [t.DEAD_LETTERS.name]}
    for workload, grants in access.items():
        if workload != "operator":
            assert set(grants["write"]) != contract, workload
    acl = resources("confluent_kafka_acl")["workload"]
    assert acl["for_each"] == "${local.acls}"
    principal = "User:${confluent_service_account.workload[each.value.workload].id}"
    assert unquote(acl["principal"]) == principal


# Shapes of real credentials: Confluent key ids (16 upper-case alphanumerics), long base64-ish
# secrets, Ably keys (appId.keyId:secret), and any literal assigned to a secret-ish name.
KEY_LIKE = [
    re.compile(r"\b[A-Z0-9]{16}\b"),
    re.compile(r"[A-Za-z0-9+/]{40,}={0,2}"),
    re.compile(r"\b[\w-]{4,}\.[\w-]{4,}:[\w+/=-]{16,}"),
    re.compile(r"""(?i)\b[\w."-]*(secret|password|api_key|client\.key|token)[\w."-]*\s*=\s*"(?!\$\{)[^"]{8,}\""""),
]


def key_like(text: str) -> list[str]:
    hits = []
    for pattern in KEY_LIKE:
        hits.extend(m.group(0) for m in pattern.finditer(text))
    return hits


def test_the_secret_scanner_catches_planted_secrets() -> None:
    assert key_like('client.key = "xVa12b.Qq9ZkA:Zm9vYmFyYmF6cXV4cXV1eDEyMzQ"')
    assert key_like('cloud_api_key = "ABCDEFGH12345678"')
    assert key_like('cloud_api_secret = "hunter2hunter2"')
    assert not key_like('cloud_api_secret = var.confluent_cloud_api_secret')
    assert not key_like('"client.key" = "${var.ably_api_key}"')


def test_no_literal_secret_anywhere_in_terraform() -> None:
    files = [p for p in TF_DIR.iterdir() if p.is_file()]
    assert any(p.name == "terraform.tfvars.example" for p in files)
    for path in files:
        text = path.read_text()
        assert key_like(text) == [], f"{path.name} holds something key-like"
    example = hcl2.load((TF_DIR / "terraform.tfvars.example").open())
    assert not any(w in k for k in example for w in SECRET_WORDS if not k.startswith("__"))


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary on PATH")
def test_terraform_fmt_check(tmp_path: Path) -> None:
    # The real binary (not the stand-in used by the driver tests): formatting is canonical.
    for path in TF_DIR.glob("*.tf"):
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(TF_DIR / "terraform.tfvars.example", tmp_path / "example.tfvars")
    version = subprocess.run(["terraform", "version"], capture_output=True, text=True,
                             timeout=60, check=False)
    if "stand-in" in version.stdout:
        pytest.skip("only the stand-in terraform is on PATH")
    done = subprocess.run(["terraform", "fmt", "-check", "-diff", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def real_terraform() -> str | None:
    binary = shutil.which("terraform")
    if binary is None:
        return None
    version = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=60,
                             check=False)
    return None if "stand-in" in version.stdout else binary


def console(tmp_path: Path, expression: str, tfvars: str) -> subprocess.CompletedProcess:
    """Evaluate ``expression`` with the real binary over variables.tf, the generated contract
    and the locals of acls.tf/service_accounts.tf: no resources, so no provider is needed."""
    work = tmp_path / "eval"
    work.mkdir(exist_ok=True)
    shutil.copy(TF_DIR / "variables.tf", work)
    shutil.copy(TF_DIR / CONTRACT_FILE, work)
    found = []
    for name in ("acls.tf", "service_accounts.tf"):
        found += re.findall(r"^locals \{.*?^\}", (TF_DIR / name).read_text(), flags=re.S | re.M)
    (work / "locals.tf").write_text("\n\n".join(found) + "\n")
    (work / "test.tfvars").write_text(tfvars)
    return subprocess.run(["terraform", "console", "-var-file=test.tfvars"], cwd=work,
                          input=expression + "\n", capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "TF_IN_AUTOMATION": "1",
                                            "NO_COLOR": "1"})


REQUIRED = ('confluent_cloud_api_key = "k"\nconfluent_cloud_api_secret = "s"\n'
            'ably_api_key = "app.key:s"\n')


@pytest.mark.skipif(real_terraform() is None, reason="no real terraform binary on PATH")
def test_acl_locals_evaluate_to_the_workload_access(tmp_path: Path) -> None:
    done = console(tmp_path, "jsonencode(local.acls)", REQUIRED)
    assert done.returncode == 0, done.stderr
    acls = json.loads(json.loads(done.stdout.strip()))
    topic_grants = {(r["workload"], r["resource_name"], r["operation"]) for r in acls.values()
                    if r["resource_type"] == "TOPIC" and r["pattern_type"] == "LITERAL"}
    expected = {(w, tp.name, op.upper()) for w, modes in WORKLOAD_ACCESS.items()
                for op, topics in modes.items() for tp in topics}
    assert topic_grants == expected
    groups = {(r["workload"], r["resource_name"]) for r in acls.values()
              if r["resource_type"] == "GROUP"}
    assert ("stream_app", "instore-stream") in groups  # Faust's group = INSTORE_APP_ID
    assert all(r["operation"] != "ALL" for r in acls.values())


@pytest.mark.skipif(real_terraform() is None, reason="no real terraform binary on PATH")
def test_variable_validations_reject_bad_values(tmp_path: Path) -> None:
    bad = ('confluent_cloud_api_key = "k"\nconfluent_cloud_api_secret = "s"\n'
           'ably_api_key = "not-a-key"\nkafka_cluster_type = "huge"\nksqldb_csu = 3\n'
           'name_prefix = "Bad Prefix"\nably_connector_plugin_path = "plugin.tar"\n')
    done = console(tmp_path, "1", bad)
    # console reports invalid variables as errors in its output (its exit code stays 0).
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m|[│╷╵]", " ", done.stdout + done.stderr).split())
    assert "Invalid value for variable" in text
    for message in ("ably_api_key must look like", "kafka_cluster_type must be",
                    "ksqldb_csu must be one of", "name_prefix must be",
                    "ably_connector_plugin_path must point"):
        assert message in text, message
    good = console(tmp_path, "1", REQUIRED)  # and the defaults pass their own validations
    assert "Invalid value" not in good.stdout + good.stderr


def test_ksqldb_may_write_every_topic_the_ksql_migrations_name() -> None:
    contract = {tp.name for tp in t.ALL}
    prefixes = [unquote(p) for p in blocks("variable")["ksqldb_topic_prefixes"]["default"]]
    ksql_dir = TF_DIR.parent / "ksql"
    named = {m for f in ksql_dir.rglob("*.sql")
             for m in re.findall(r"KAFKA_TOPIC\s*=\s*'([^']+)'", f.read_text(), flags=re.I)}
    for topic in named - contract:
        assert any(topic.startswith(p) for p in prefixes), topic
    written = set(contract_locals()["workload_access"]["ksqldb"]["write"])
    assert t.NEARBY_CUSTOMERS.name in written
