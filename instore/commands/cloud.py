"""`instore cloud ...`: Confluent Cloud + ksqlDB + Ably with Terraform: plan, up, down, env.

Terraform runs through python-terraform in ``terraform/``. Secrets (the Confluent Cloud API
key and the Ably key, from Settings) reach Terraform only in python-terraform's temporary
var file (mode 0600, deleted after each command), never on a command line or in a .tf file.
Everything printed goes through a mask of every secret known to the run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from instore import cloudenv
from instore import topics as t
from instore.errors import InstoreError
from instore.settings import Settings

log = logging.getLogger(__name__)

app = typer.Typer(help="Confluent Cloud + Ably with Terraform: plan, up, down, env.",
                  no_args_is_help=True)
console = Console(stderr=True)

CONTRACT_FILE = "contract.tf.json"
DEFAULT_DIR = Path("terraform")
# `instore ksql migrate` against the cloud ksqlDB, as its own process (the ksql part owns it).
MIGRATE_ARGV: tuple[str, ...] = (sys.executable, "-m", "instore", "ksql", "migrate")
MIGRATE_TIMEOUT_S = 900.0
# The ably_api_key variable is required, but only the connector uses it: with the connector
# off, or to destroy, this stand-in value lets Terraform run without a real key.
UNUSED_ABLY_KEY = "unused.unused:connector-off-or-destroying"

INSTALL_HINT = ("Terraform is not on PATH: install Terraform 1.5 or newer from "
                "https://developer.hashicorp.com/terraform/install and run this again.")
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

# Who reads and writes which contract topic. acls.tf turns this into one ACL per grant;
# prefixed grants (consumer groups, Faust's and ksqlDB's own topics) are in acls.tf.
_SOURCES = (t.CUSTOMERS_LOCATIONS, t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS,
            t.KIOSK_INTERACTIONS, t.SHOPPER_CONSENTS)
WORKLOAD_ACCESS: dict[str, dict[str, tuple[t.Topic, ...]]] = {
    "stream_app": {"read": (*_SOURCES, t.NEARBY_CUSTOMERS, t.OFFER_EVENTS),
                   "write": (t.NEARBY_CUSTOMERS, t.OFFERS, t.DEAD_LETTERS)},
    "ksqldb": {"read": (*_SOURCES, t.NEARBY_CUSTOMERS, t.OFFERS),
               "write": (t.NEARBY_CUSTOMERS,)},
    "push_connector": {"read": (t.OFFERS,), "write": (t.DEAD_LETTERS,)},
    "push_sink": {"read": (t.OFFERS, t.KIOSK_INTERACTIONS, t.SHOPPER_CONSENTS),
                  "write": (t.OFFER_EVENTS, t.DEAD_LETTERS)},
    "edge": {"read": (), "write": (t.CUSTOMERS_LOCATIONS, t.KIOSK_INTERACTIONS, t.DEAD_LETTERS)},
    "api": {"read": (t.OFFERS, t.OFFER_EVENTS, t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS,
                     t.SHOPPER_CONSENTS),
            "write": (t.STORES_PRODUCTS, t.PRODUCTS_PROMOTIONS, t.SHOPPER_CONSENTS,
                      t.KIOSK_INTERACTIONS, t.OFFER_EVENTS, t.DEAD_LETTERS)},
    "operator": {"read": t.ALL, "write": t.ALL},
}
# The Ably sink connector reads offers (key = uid) and dead-letters what it cannot map.
PUSH_CONNECTOR = {"source_topic": t.OFFERS, "dead_letter_topic": t.DEAD_LETTERS}


class CloudError(InstoreError):
    """Something the user can fix; the message says how, in one sentence."""


# --- the contract, as Terraform JSON -------------------------------------------------------

def default_partitions() -> int:
    """Partitions of a topic without its own count: the Settings default, which the ksql
    migrations' ``PARTITIONS=`` also use (ksqlDB refuses a topic with another count)."""
    return int(Settings.model_fields["kafka_partitions"].default)


def contract_tf(partitions: int | None = None) -> dict[str, Any]:
    """``terraform/contract.tf.json``: the topics of instore/topics.py and who may use them."""
    partitions = partitions or default_partitions()
    topics = {
        topic.name: {
            "kind": topic.kind,
            "description": topic.description,
            "partitions": t.partitions_of(topic, partitions),
            "config": topic.config(),
        }
        for topic in t.ALL
    }
    access = {
        workload: {mode: [topic.name for topic in grants[mode]] for mode in ("read", "write")}
        for workload, grants in WORKLOAD_ACCESS.items()
    }
    return {
        "//": "Generated by `instore cloud topics-tf` from instore/topics.py and "
              "instore/commands/cloud.py. Do not edit: regenerate.",
        "locals": {
            "default_partitions": partitions,
            "contract_topics": topics,
            "workload_access": access,
            "push_connector": {k: v.name for k, v in PUSH_CONNECTOR.items()},
        },
    }


def render_contract(partitions: int | None = None) -> str:
    return json.dumps(contract_tf(partitions), indent=2) + "\n"


# --- the Terraform driver ------------------------------------------------------------------

def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


class TerraformDriver:
    """init / plan / apply / output in one working directory, through python-terraform."""

    def __init__(self, workdir: Path, variables: dict[str, Any] | None = None,
                 secrets: set[str] | None = None) -> None:
        from python_terraform import Terraform  # noqa: PLC0415

        # python-terraform logs variables and raw outputs at DEBUG, stderr at WARNING: keep
        # both out of every log (we print what matters ourselves, masked).
        logging.getLogger("python_terraform").setLevel(logging.ERROR)
        binary = shutil.which("terraform")
        if binary is None:
            raise CloudError(INSTALL_HINT)
        if not (workdir / "versions.tf").is_file():
            msg = (f"{workdir} holds no Terraform configuration: run from the repository root "
                   "or pass --dir path/to/terraform.")
            raise CloudError(msg)
        self.workdir = workdir
        self.variables = dict(variables or {})
        self.secrets = set(secrets or ())
        self.last_code = 0
        self.tf = Terraform(working_dir=str(workdir), terraform_bin_path=binary)

    def mask(self, text: str | None) -> str:
        return cloudenv.mask_text(text or "", self.secrets)

    def _run(self, what: str, cmd: str, *args: str, **options: Any) -> str:
        code, out, err = self.tf.cmd(cmd, *args, **options)
        if code not in (0, 2) or (code == 2 and not options.get("detailed_exitcode")):
            detail = self.mask(err or out).strip()
            msg = f"terraform {what} failed (exit {code}):\n{detail}"
            raise CloudError(msg)
        self.last_code = code
        return self.mask(out)

    def init(self) -> str:
        from python_terraform import IsFlagged  # noqa: PLC0415

        log.info("terraform init in %s", self.workdir)
        return self._run("init", "init", input=False, no_color=IsFlagged, backend=True)

    def plan(self, plan_file: Path | None = None, *, destroy: bool = False) -> tuple[bool, str]:
        """Plan (to ``plan_file`` when given); returns (changes pending, masked plan text)."""
        from python_terraform import IsFlagged, IsNotFlagged  # noqa: PLC0415

        log.info("terraform plan%s", " -destroy" if destroy else "")
        out = self._run("plan", "plan", input=False, no_color=IsFlagged,
                        detailed_exitcode=IsFlagged, var=self.variables or None,
                        out=str(plan_file) if plan_file else None,
                        destroy=IsFlagged if destroy else IsNotFlagged)
        return self.last_code == 2, out

    def apply(self, plan_file: Path, on_line: Callable[[str], None] | None = None) -> str:
        """Apply a saved plan: exactly what was shown and confirmed, nothing re-planned.
        Terraform's own progress lines ("Still creating... [2m10s elapsed]") reach ``on_line``
        as they come, masked, so a 15-minute apply shows what it is doing."""
        log.info("terraform apply of the confirmed plan")
        cmd = [self.tf.terraform_bin_path, "apply", "-input=false", "-no-color", str(plan_file)]
        lines: list[str] = []
        with subprocess.Popen(cmd, cwd=self.workdir, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = self.mask(raw.rstrip("\n"))
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            code = proc.wait()
        self.last_code = code
        if code != 0:
            detail = "\n".join(lines[-20:]).strip()
            msg = f"terraform apply failed (exit {code}):\n{detail}"
            raise CloudError(msg)
        return "\n".join(lines) + "\n"

    def outputs(self) -> dict[str, Any]:
        from python_terraform import IsFlagged  # noqa: PLC0415

        code, out, err = self.tf.cmd("output", json=IsFlagged, no_color=IsFlagged)
        if code != 0:
            msg = f"terraform output failed (exit {code}): {self.mask(err).strip()}"
            raise CloudError(msg)
        try:
            data = json.loads(out or "{}")
        except json.JSONDecodeError:
            msg = "terraform output -json did not print JSON: is this the Terraform binary?"
            raise CloudError(msg) from None
        if not data:
            msg = "Terraform has no outputs yet: run `instore cloud up` first."
            raise CloudError(msg)
        self.secrets |= cloudenv.secret_values(data)
        return data


# --- shared option handling ----------------------------------------------------------------

DirOpt = Annotated[Path, typer.Option("--dir", help="The Terraform configuration.")]
EnvFileOpt = Annotated[Path, typer.Option("--env-file", help="The .env to write.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
WorkloadOpt = Annotated[str, typer.Option(
    help=f"Whose Kafka key goes into .env: {', '.join(cloudenv.ENV_WORKLOADS)} (operator also "
         "gets the ksqlDB key).")]
class ClusterType(StrEnum):
    basic = "basic"
    standard = "standard"
    dedicated = "dedicated"


class Cloud(StrEnum):
    AWS = "AWS"
    GCP = "GCP"
    AZURE = "AZURE"


ClusterTypeOpt = Annotated[ClusterType | None, typer.Option(help="The Kafka cluster's type.")]
RegionOpt = Annotated[str | None, typer.Option(help="Cloud region, e.g. us-east-2.")]
CloudOpt = Annotated[Cloud | None, typer.Option("--cloud", help="The cloud provider.")]
CsuOpt = Annotated[int | None, typer.Option(help="ksqlDB CSUs (1, 2, 4, 8, 12, 28).")]
PrefixOpt = Annotated[str | None, typer.Option(help="Prefix of every display name.")]
ConnectorOpt = Annotated[bool | None, typer.Option(
    "--ably-connector/--no-ably-connector",
    help="Provision the Ably sink connector (default: terraform.tfvars, else on).")]
PluginOpt = Annotated[Path | None, typer.Option(
    "--ably-plugin", help="The Ably Kafka Connector .zip/.jar to upload.")]


def _fail(exc: Exception | str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {exc}")
    return typer.Exit(1)


@app.callback()
def _needs_terraform_helpers() -> None:
    from rich.markup import escape  # noqa: PLC0415

    from instore.extras import missing  # noqa: PLC0415

    if (why := missing("cloud")) is not None:
        raise _fail(escape(why))


def _settings(env_file: Path) -> Settings:
    try:
        return Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        msg = f"the settings (environment or {env_file}) are invalid: {exc.errors()[0]['msg']}"
        raise CloudError(msg) from None


def _tfvars(workdir: Path) -> dict[str, Any]:
    path = workdir / "terraform.tfvars"
    if not path.is_file():
        return {}
    import hcl2  # noqa: PLC0415

    with path.open(encoding="utf-8") as fh:
        return {k: _unquote(v) for k, v in hcl2.load(fh).items() if not k.startswith("__")}


def _overrides(*, cluster_type: ClusterType | None, region: str | None, cloud: Cloud | None,
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


def _driver(workdir: Path, settings: Settings, overrides: dict[str, Any], *,
            destroying: bool = False) -> TerraformDriver:
    if shutil.which("terraform") is None:
        raise CloudError(INSTALL_HINT)
    variables, secrets = _variables(settings, workdir, overrides, destroying=destroying)
    return TerraformDriver(workdir, variables, secrets)


def _check_contract(workdir: Path) -> None:
    path = workdir / CONTRACT_FILE
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    try:
        declared = json.loads(current or "{}").get("locals", {}).get("contract_topics")
    except json.JSONDecodeError:
        declared = None
    if declared is None:
        msg = f"{path} is missing: run `instore cloud topics-tf`."
        raise CloudError(msg)
    partitions = json.loads(current)["locals"].get("default_partitions")
    if current != render_contract(partitions):
        msg = f"{path} is out of date with instore/topics.py: run `instore cloud topics-tf`."
        raise CloudError(msg)


def _terraform_line(line: str) -> None:
    """One of Terraform's own output lines, as it comes (already masked)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _show_plan(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _write_env(driver: TerraformDriver, env_file: Path, settings: Settings,
               workload: str) -> dict[str, str]:
    outputs = driver.outputs()
    text = env_file.read_text(encoding="utf-8") if env_file.is_file() else ""
    user = cloudenv.parse_env(cloudenv.strip_block(text))
    ably = settings.ably_api_key.get_secret_value() if settings.ably_api_key else None
    env = cloudenv.cloud_env(outputs, workload=workload, ably_api_key=ably, user=user,
                             previous=cloudenv.block_values(text))
    note = (f"workload: {workload}. Schema registry: "
            f"{outputs.get('schema_registry_url', {}).get('value', '-')}")
    cloudenv.write_private(env_file, cloudenv.render_env(text, env, note=note))
    driver.secrets |= cloudenv.secret_values({}, extra=[env[k] for k in env
                                                        if k in cloudenv.SECRET_KEYS])
    log.info("wrote %s (mode 0600) for workload %s", env_file, workload)
    table = Table("setting", "value", title=f"{env_file} (mode 0600)")
    for name, value in cloudenv.masked(env).items():
        table.add_row(name, value)
    console.print(table)
    return env


def _migrate(driver: TerraformDriver, env: dict[str, str]) -> None:
    console.print("[cyan]cloud[/] applying the ksqlDB migrations: instore ksql migrate")
    child_env = dict(os.environ) | env
    try:
        done = subprocess.run(list(MIGRATE_ARGV), env=child_env, capture_output=True, text=True,
                              timeout=MIGRATE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        msg = ("`instore ksql migrate` did not finish in time; the ksqlDB cluster can take "
               "minutes to accept connections: run `instore ksql migrate` again shortly.")
        raise CloudError(msg) from None
    for stream in (done.stdout, done.stderr):
        if stream.strip():
            console.print(driver.mask(stream).rstrip(), markup=False, highlight=False)
    if done.returncode != 0:
        msg = (f"`instore ksql migrate` failed (exit {done.returncode}); a new ksqlDB cluster "
               "can take minutes to accept connections: run `instore ksql migrate` again shortly.")
        raise CloudError(msg)
    log.info("ksqlDB migrations applied")


# --- commands ------------------------------------------------------------------------------

@app.command()
def plan(
    tf_dir: DirOpt = DEFAULT_DIR,
    env_file: EnvFileOpt = Path(".env"),
    cluster_type: ClusterTypeOpt = None,
    region: RegionOpt = None,
    cloud: CloudOpt = None,
    ksqldb_csu: CsuOpt = None,
    name_prefix: PrefixOpt = None,
    ably_connector: ConnectorOpt = None,
    ably_plugin: PluginOpt = None,
) -> None:
    """Show what `instore cloud up` would create or change in Confluent Cloud (no change made)."""
    try:
        _check_contract(tf_dir)
        overrides = _overrides(cluster_type=cluster_type, region=region, cloud=cloud,
                               ksqldb_csu=ksqldb_csu, name_prefix=name_prefix,
                               ably_connector=ably_connector, ably_plugin=ably_plugin)
        driver = _driver(tf_dir, _settings(env_file), overrides)
        with console.status("terraform init"):
            driver.init()
        with console.status("terraform plan (reads your Confluent Cloud organization)"):
            changes, text = driver.plan()
        _show_plan(text)
        console.print("[cyan]cloud[/] " + ("changes pending: `instore cloud up` applies them"
                                          if changes else "nothing to change"))
    except CloudError as exc:
        raise _fail(exc) from None


@app.command()
def up(
    yes: YesOpt = False,
    tf_dir: DirOpt = DEFAULT_DIR,
    env_file: EnvFileOpt = Path(".env"),
    workload: WorkloadOpt = "operator",
    skip_migrate: Annotated[bool, typer.Option(
        "--skip-migrate", help="Do not run `instore ksql migrate` afterwards.")] = False,
    cluster_type: ClusterTypeOpt = None,
    region: RegionOpt = None,
    cloud: CloudOpt = None,
    ksqldb_csu: CsuOpt = None,
    name_prefix: PrefixOpt = None,
    ably_connector: ConnectorOpt = None,
    ably_plugin: PluginOpt = None,
) -> None:
    """Plan, confirm, apply; write .env (0600) from the outputs; run the ksqlDB migrations."""
    try:
        _check_contract(tf_dir)
        if workload not in cloudenv.ENV_WORKLOADS:
            msg = f"--workload must be one of {', '.join(cloudenv.ENV_WORKLOADS)}"
            raise CloudError(msg)
        settings = _settings(env_file)
        overrides = _overrides(cluster_type=cluster_type, region=region, cloud=cloud,
                               ksqldb_csu=ksqldb_csu, name_prefix=name_prefix,
                               ably_connector=ably_connector, ably_plugin=ably_plugin)
        driver = _driver(tf_dir, settings, overrides)
        with tempfile.TemporaryDirectory(prefix="instore-tfplan-") as private:
            # The saved plan holds the variables, secrets included: it lives in a 0700
            # directory and is gone when this block ends.
            plan_file = Path(private) / "up.tfplan"
            with console.status("terraform init"):
                driver.init()
            with console.status("terraform plan (reads your Confluent Cloud organization)"):
                changes, text = driver.plan(plan_file)
            _show_plan(text)
            if changes:
                if not yes and not typer.confirm(
                        "Apply this plan? It creates billable resources in Confluent Cloud",
                        default=False, err=True):
                    console.print("[yellow]cloud[/] nothing applied")
                    raise typer.Exit(1)
                console.print("[cyan]cloud[/] terraform apply (a new ksqlDB cluster takes "
                              "5-15 minutes; Terraform's progress follows)")
                driver.apply(plan_file, on_line=_terraform_line)
            else:
                console.print("[cyan]cloud[/] nothing to change")
        env = _write_env(driver, env_file, settings, workload)
        if skip_migrate:
            console.print("[cyan]cloud[/] skipped the ksqlDB migrations (--skip-migrate)")
        elif workload == "operator":
            _migrate(driver, env)
        else:
            console.print("[cyan]cloud[/] the ksqlDB migrations need the operator's ksqlDB key: "
                          "run `instore cloud env` and then `instore ksql migrate`")
        console.print(f"[bold green]cloud is up[/]: every instore command now uses {env_file}")
    except (CloudError, cloudenv.CloudEnvError) as exc:
        raise _fail(exc) from None


@app.command()
def down(
    yes: YesOpt = False,
    tf_dir: DirOpt = DEFAULT_DIR,
    env_file: EnvFileOpt = Path(".env"),
    keep_env: Annotated[bool, typer.Option(
        "--keep-env", help="Leave the cloud block in .env.")] = False,
) -> None:
    """Destroy everything `instore cloud up` created, after showing the plan and a confirmation."""
    try:
        driver = _driver(tf_dir, _settings(env_file), {}, destroying=True)
        with tempfile.TemporaryDirectory(prefix="instore-tfplan-") as private:
            plan_file = Path(private) / "down.tfplan"
            with console.status("terraform init"):
                driver.init()
            with console.status("terraform plan -destroy"):
                changes, text = driver.plan(plan_file, destroy=True)
            _show_plan(text)
            if changes:
                if not yes and not typer.confirm(
                        "Destroy all of it? Topics and their data are deleted for good",
                        default=False, err=True):
                    console.print("[yellow]cloud[/] nothing destroyed")
                    raise typer.Exit(1)
                console.print("[cyan]cloud[/] terraform apply (destroy; Terraform's progress "
                              "follows)")
                driver.apply(plan_file, on_line=_terraform_line)
            else:
                console.print("[cyan]cloud[/] nothing to destroy")
        if not keep_env and env_file.is_file():
            text = env_file.read_text(encoding="utf-8")
            cloudenv.write_private(env_file, cloudenv.strip_block(text))
            console.print(f"[cyan]cloud[/] removed the cloud settings from {env_file}")
        console.print("[bold green]cloud is down[/]")
    except CloudError as exc:
        raise _fail(exc) from None


@app.command()
def env(
    tf_dir: DirOpt = DEFAULT_DIR,
    env_file: EnvFileOpt = Path(".env"),
    workload: WorkloadOpt = "operator",
) -> None:
    """Write .env (mode 0600) from the Terraform outputs; secrets are never printed."""
    try:
        if workload not in cloudenv.ENV_WORKLOADS:
            msg = f"--workload must be one of {', '.join(cloudenv.ENV_WORKLOADS)}"
            raise CloudError(msg)
        settings = _settings(env_file)
        extra = [settings.ably_api_key.get_secret_value()] if settings.ably_api_key else []
        driver = TerraformDriver(tf_dir, secrets=cloudenv.secret_values({}, extra=extra))
        _write_env(driver, env_file, settings, workload)
    except (CloudError, cloudenv.CloudEnvError) as exc:
        raise _fail(exc) from None


@app.command("topics-tf")
def topics_tf(
    tf_dir: DirOpt = DEFAULT_DIR,
    check: Annotated[bool, typer.Option(
        "--check", help="Only check the file is current (exit 1 if not).")] = False,
    partitions: Annotated[int | None, typer.Option(
        help="Partitions of topics without their own count (default: KAFKA_PARTITIONS "
             "default, which the ksql migrations use).")] = None,
) -> None:
    """Generate terraform/contract.tf.json (topics and per-workload access) from the contract."""
    path = tf_dir / CONTRACT_FILE
    if check:
        try:
            _check_contract(tf_dir)
        except CloudError as exc:
            raise _fail(exc) from None
        console.print(f"[green]{path} is current[/]")
        return
    path.write_text(render_contract(partitions), encoding="utf-8")
    console.print(f"[cyan]cloud[/] wrote {path} ({len(t.ALL)} topics)")
