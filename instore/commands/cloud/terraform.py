"""The Terraform driver: init / plan / apply / output in one working directory, through
python-terraform, everything it prints masked with every secret known to the run."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from instore import cloudenv
from instore.commands.cloud.errors import CloudError

log = logging.getLogger(__name__)

INSTALL_HINT = ("Terraform is not on PATH: install Terraform 1.5 or newer from "
                "https://developer.hashicorp.com/terraform/install and run this again.")


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
