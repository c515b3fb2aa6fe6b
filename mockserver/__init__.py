"""qwen-image-mock: an offline mock of the powertokens and modelverse Qwen image-editing APIs."""

__version__ = "0.1.0"

from .app import create_app
from .core.settings import Settings

__all__ = ["Settings", "__version__", "create_app"]
