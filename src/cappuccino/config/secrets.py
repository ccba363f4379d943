"""Credentials, only ever from environment variables; never logged, never written."""

from __future__ import annotations

import os


def exchange_credentials(exchange_id: str) -> dict[str, str]:
    """ccxt credentials from ``CAPPUCCINO_<EXCHANGE>_API_KEY`` / ``_SECRET`` (empty when unset).

    The returned dict goes straight into the exchange constructor; callers must not log it.
    """
    prefix = f"CAPPUCCINO_{exchange_id.upper()}_"
    key, secret = os.environ.get(prefix + "API_KEY"), os.environ.get(prefix + "SECRET")
    if bool(key) != bool(secret):
        raise ValueError(f"{prefix}API_KEY and {prefix}SECRET must be set together")
    return {"apiKey": key, "secret": secret} if key and secret else {}
