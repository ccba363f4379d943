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


STORAGE_PASSWORD_ENV = "CAPPUCCINO_STORAGE_PASSWORD"


def storage_url(url: str) -> str:
    """A database URL (study storage) with its password taken from
    ``CAPPUCCINO_STORAGE_PASSWORD`` when that is set. A password written into the URL is
    refused: URLs appear in configs, logs and command lines."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"storage: {url.split(':', 1)[0]}://... is not a database URL") from exc
    if parsed.password is not None:
        raise ValueError(
            f"storage: the URL for {parsed.render_as_string(hide_password=True)} holds a "
            f"password; put it in {STORAGE_PASSWORD_ENV} instead"
        )
    password = os.environ.get(STORAGE_PASSWORD_ENV)
    if password and parsed.username:
        parsed = parsed.set(password=password)
    return parsed.render_as_string(hide_password=False)
