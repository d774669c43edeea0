"""`instore cloud ...`: Confluent Cloud + ksqlDB + Ably with Terraform: plan, up, down, env.

Terraform runs through python-terraform in ``terraform/`` (``terraform.TerraformDriver``).
Secrets (the Confluent Cloud API key and the Ably key, from Settings; ``variables``) reach
Terraform only in python-terraform's temporary var file (mode 0600, deleted after each command),
never on a command line or in a .tf file. Everything printed goes through a mask of every
secret known to the run. ``contract`` generates terraform/contract.tf.json from the topic
contract.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from instore import cloudenv
from instore import topics as t
from instore.commands.cloud.contract import CONTRACT_FILE, check_contract, render_contract
from instore.commands.cloud.errors import CloudError
from instore.commands.cloud.terraform import TerraformDriver
from instore.commands.cloud.variables import (
    Cloud,
    ClusterType,
    load_settings,
    make_driver,
    overrides_of,
)
from instore.settings import Settings

log = logging.getLogger(__name__)

app = typer.Typer(help="Confluent Cloud + Ably with Terraform: plan, up, down, env.",
                  no_args_is_help=True)
console = Console(stderr=True)

DEFAULT_DIR = Path("terraform")
# `instore ksql migrate` against the cloud ksqlDB, as its own process (the ksql part owns it).
MIGRATE_ARGV: tuple[str, ...] = (sys.executable, "-m", "instore", "ksql", "migrate")
MIGRATE_TIMEOUT_S = 900.0


# --- shared option handling ----------------------------------------------------------------

DirOpt = Annotated[Path, typer.Option("--dir", help="The Terraform configuration.")]
EnvFileOpt = Annotated[Path, typer.Option("--env-file", help="The .env to write.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
WorkloadOpt = Annotated[str, typer.Option(
    help=f"Whose Kafka key goes into .env: {', '.join(cloudenv.ENV_WORKLOADS)} (operator also "
         "gets the ksqlDB key).")]

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


def _check_workload(workload: str) -> None:
    if workload not in cloudenv.ENV_WORKLOADS:
        msg = f"--workload must be one of {', '.join(cloudenv.ENV_WORKLOADS)}"
        raise CloudError(msg)


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


@dataclass(frozen=True)
class _Change:
    """What `up` or `down` says while it plans, asks and applies."""

    plan_name: str
    planning: str
    question: str
    refused: str
    applying: str
    nothing: str
    destroy: bool = False


_UP = _Change(
    plan_name="up.tfplan",
    planning="terraform plan (reads your Confluent Cloud organization)",
    question="Apply this plan? It creates billable resources in Confluent Cloud",
    refused="[yellow]cloud[/] nothing applied",
    applying="[cyan]cloud[/] terraform apply (a new ksqlDB cluster takes 5-15 minutes; "
             "Terraform's progress follows)",
    nothing="[cyan]cloud[/] nothing to change",
)
_DOWN = _Change(
    plan_name="down.tfplan",
    planning="terraform plan -destroy",
    question="Destroy all of it? Topics and their data are deleted for good",
    refused="[yellow]cloud[/] nothing destroyed",
    applying="[cyan]cloud[/] terraform apply (destroy; Terraform's progress follows)",
    nothing="[cyan]cloud[/] nothing to destroy",
    destroy=True,
)


def _plan_confirm_apply(driver: TerraformDriver, change: _Change, yes: bool) -> None:
    """Init, plan to a file, show the plan, ask (unless ``yes``), apply exactly that plan;
    exit 1 when the answer is no."""
    with tempfile.TemporaryDirectory(prefix="instore-tfplan-") as private:
        # The saved plan holds the variables, secrets included: it lives in a 0700
        # directory and is gone when this block ends.
        plan_file = Path(private) / change.plan_name
        with console.status("terraform init"):
            driver.init()
        with console.status(change.planning):
            changes, text = driver.plan(plan_file, destroy=change.destroy)
        _show_plan(text)
        if not changes:
            console.print(change.nothing)
            return
        if not yes and not typer.confirm(change.question, default=False, err=True):
            console.print(change.refused)
            raise typer.Exit(1)
        console.print(change.applying)
        driver.apply(plan_file, on_line=_terraform_line)


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
        check_contract(tf_dir)
        overrides = overrides_of(cluster_type=cluster_type, region=region, cloud=cloud,
                                 ksqldb_csu=ksqldb_csu, name_prefix=name_prefix,
                                 ably_connector=ably_connector, ably_plugin=ably_plugin)
        driver = make_driver(tf_dir, load_settings(env_file), overrides)
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
        check_contract(tf_dir)
        _check_workload(workload)
        settings = load_settings(env_file)
        overrides = overrides_of(cluster_type=cluster_type, region=region, cloud=cloud,
                                 ksqldb_csu=ksqldb_csu, name_prefix=name_prefix,
                                 ably_connector=ably_connector, ably_plugin=ably_plugin)
        driver = make_driver(tf_dir, settings, overrides)
        _plan_confirm_apply(driver, _UP, yes)
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
        driver = make_driver(tf_dir, load_settings(env_file), {}, destroying=True)
        _plan_confirm_apply(driver, _DOWN, yes)
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
        _check_workload(workload)
        settings = load_settings(env_file)
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
            check_contract(tf_dir)
        except CloudError as exc:
            raise _fail(exc) from None
        console.print(f"[green]{path} is current[/]")
        return
    path.write_text(render_contract(partitions), encoding="utf-8")
    console.print(f"[cyan]cloud[/] wrote {path} ({len(t.ALL)} topics)")
