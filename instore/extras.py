"""Optional parts of the install: the camera stack (``[edge]``) and the Terraform helpers
(``[cloud]``). Their commands check for them first and say how to install what is missing."""

from __future__ import annotations

from importlib.util import find_spec

EXTRAS: dict[str, tuple[str, ...]] = {
    "edge": ("numpy", "scipy", "cv2", "pyrealsense2", "geographiclib"),
    "cloud": ("python_terraform", "hcl2"),
}


def missing(extra: str) -> str | None:
    """None when every module of ``extra`` imports, else one sentence saying how to get them."""
    absent = [m for m in EXTRAS[extra] if find_spec(m) is None]
    if not absent:
        return None
    return (f"this needs the [{extra}] extra ({', '.join(absent)} not installed): "
            f"pip install 'instore[{extra}]' (make setup installs it)")
