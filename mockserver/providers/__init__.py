"""The providers the mock serves: one module each, plus its folder in ``schemas/``.

A new provider is a new module with a ``Provider`` subclass, its schemas, and one entry here.
"""

from .base import Provider, ResponseContext
from .modelverse import Modelverse
from .powertokens import Powertokens

PROVIDERS: tuple[type[Provider], ...] = (Powertokens, Modelverse)

__all__ = ["PROVIDERS", "Modelverse", "Powertokens", "Provider", "ResponseContext"]
