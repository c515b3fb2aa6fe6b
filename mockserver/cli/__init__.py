"""The command line: ``qwen-image-mock serve``, ``check`` and ``record``."""

from .commands import build_parser, main

__all__ = ["build_parser", "main"]
