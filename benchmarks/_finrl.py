"""Load FinRL 0.3.7's published ``CryptoEnv`` without the package's heavy imports.

The wheel is fetched once with ``pip download --no-deps finrl==0.3.7`` into
``.cache/finrl`` and the single module ``env_multiple_crypto.py`` is loaded from it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "finrl"
MODULE = "finrl/meta/env_cryptocurrency_trading/env_multiple_crypto.py"


def load_crypto_env() -> type:
    target = CACHE / "env_multiple_crypto.py"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        wheels = list(CACHE.glob("*.whl"))
        if not wheels:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--dest",
                    str(CACHE),
                    "finrl==0.3.7",
                ],
                check=True,
            )
            wheels = list(CACHE.glob("*.whl"))
        with zipfile.ZipFile(wheels[0]) as z:
            target.write_bytes(z.read(MODULE))
    spec = importlib.util.spec_from_file_location("finrl_env_multiple_crypto", target)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {target}")
    mod: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.CryptoEnv  # type: ignore[no-any-return]
