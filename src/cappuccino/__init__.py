"""Cappuccino: deep-learning and reinforcement-learning trading research lab.

Data flow (see DESIGN.md): data -> features -> datasets -> models -> training ->
tuning -> evaluation -> live. Each stage is a subpackage; the CLI is a thin
typer app over library functions.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cappuccino")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
