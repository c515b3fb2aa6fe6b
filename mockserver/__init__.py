"""qwen-image-mock: an offline mock of hosted Qwen image-editing APIs, and a contract-test kit
for the real ones."""

__version__ = "0.1.0"

from .app import create_app
from .core.settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
