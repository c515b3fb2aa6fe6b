"""The providers the mock serves, in order (the first whose mount matches answers a path no
one serves): one module each, plus its folder in ``schemas/``. Adding a provider is its
module, its schema folder and its entry here; nothing else names a provider."""

from .api import Provider
from .dashscope import DashScope
from .modelverse import Modelverse
from .powertokens import Powertokens

PROVIDERS: tuple[type[Provider], ...] = (Powertokens, Modelverse, DashScope)
