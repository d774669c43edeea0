"""What Terraform is given: the settings (environment or the .env file), the variables
(credentials from the settings, terraform.tfvars, the command line's overrides), the secrets
to mask, and a driver ready to run, each missing piece refused with one sentence saying how
to give it."""

from __future__ import annotations

import shutil
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from instore import cloudenv
from instore.commands.cloud.errors import CloudError
from instore.commands.cloud.terraform import INSTALL_HINT, TerraformDriver
from instore.settings import Settings, describe

# The ably_api_key variable is required, but only the connector uses it: with the connector
# off, or to destroy, this stand-in value lets Terraform run without a real key.
UNUSED_ABLY_KEY = "unused.unused:connector-off-or-destroying"

CREDENTIALS_HINT = ("Set CONFLUENT_CLOUD_API_KEY and CONFLUENT_CLOUD_API_SECRET (a Cloud resource-"
                    "management key: Confluent Cloud console > API keys > Add key > 'Cloud "
                    "resource management', or `confluent api-key create --resource cloud`) in "
                    "the environment or .env.")
ABLY_HINT = ("Set ABLY_API_KEY to an Ably API key with publish capability (Ably dashboard > your "
             "app > API Keys), or run with --no-ably-connector.")
PLUGIN_HINT = ("The Ably sink needs its plugin archive: download the Ably Kafka Connector .zip "
               "(Confluent Hub ably/kafka-connect-ably, or github.com/ably/kafka-connect-ably "
               "releases) and pass --ably-plugin PATH (or set ably_connector_plugin_path in "
               "terraform/terraform.tfvars), or run with --no-ably-connector.")


class ClusterType(StrEnum):
    basic = "basic"
    standard = "standard"
    dedicated = "dedicated"


class Cloud(StrEnum):
    AWS = "AWS"
    GCP = "GCP"
    AZURE = "AZURE"


def load_settings(env_file: Path) -> Settings:
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        msg = f"in the environment or {env_file}: {describe(exc)}"
        raise CloudError(msg) from None


def _tfvars(workdir: Path) -> dict[str, Any]:
    path = workdir / "terraform.tfvars"
    if not path.is_file():
        return {}
    import hcl2  # noqa: PLC0415

    with path.open(encoding="utf-8") as fh:
        return {k: _unquote(v) for k, v in hcl2.load(fh).items() if not k.startswith("__")}


def overrides_of(*, cluster_type: ClusterType | None, region: str | None, cloud: Cloud | None,
               ksqldb_csu: int | None, name_prefix: str | None, ably_connector: bool | None,
               ably_plugin: Path | None) -> dict[str, Any]:
    given = {
        "kafka_cluster_type": cluster_type.value if cluster_type else None, "region": region,
        "cloud": cloud.value if cloud else None,
        "ksqldb_csu": ksqldb_csu, "name_prefix": name_prefix,
        "ably_connector_enabled": ably_connector,
        "ably_connector_plugin_path": str(ably_plugin.resolve()) if ably_plugin else None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _variables(settings: Settings, workdir: Path, overrides: dict[str, Any], *,
               destroying: bool = False) -> tuple[dict[str, Any], set[str]]:
    """Terraform variables (secrets from Settings + CLI overrides) and the secrets to mask."""
    key = settings.confluent_cloud_api_key
    secret = settings.confluent_cloud_api_secret
    if not key or secret is None or not secret.get_secret_value():
        raise CloudError(CREDENTIALS_HINT)
    tfvars = _tfvars(workdir)
    connector = bool(overrides.get("ably_connector_enabled",
                                   tfvars.get("ably_connector_enabled", True)))
    ably = settings.ably_api_key.get_secret_value() if settings.ably_api_key else None
    if not ably:
        if connector and not destroying:
            raise CloudError(ABLY_HINT)
        ably = UNUSED_ABLY_KEY
    if connector and not destroying:
        plugin = str(overrides.get("ably_connector_plugin_path")
                     or tfvars.get("ably_connector_plugin_path") or "")
        if not plugin or not (workdir / plugin).is_file():
            raise CloudError(PLUGIN_HINT)
    variables = {
        "confluent_cloud_api_key": key,
        "confluent_cloud_api_secret": secret.get_secret_value(),
        "ably_api_key": ably,
        **overrides,
    }
    return variables, cloudenv.secret_values({}, extra=[key, secret.get_secret_value(), ably])


def make_driver(workdir: Path, settings: Settings, overrides: dict[str, Any], *,
            destroying: bool = False) -> TerraformDriver:
    if shutil.which("terraform") is None:
        raise CloudError(INSTALL_HINT)
    variables, secrets = _variables(settings, workdir, overrides, destroying=destroying)
    return TerraformDriver(workdir, variables, secrets)


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value
