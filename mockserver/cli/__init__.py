"""The command line: ``qwen-image-mock serve`` and ``qwen-image-mock check``."""

from .commands import build_parser, main

__all__ = ["build_parser", "main"]
