"""Data the package ships: found inside an installed wheel, or at the top of a checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def data_dir(in_package: str, in_checkout: str) -> Path:
    packaged = Path(str(resources.files("mockserver"))) / in_package
    return packaged if packaged.is_dir() else CHECKOUT / in_checkout
