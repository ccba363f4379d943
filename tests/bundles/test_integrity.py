"""Bundles you can trust: a changed weights file, an edited manifest, another library
version, changed feature code, a truncated or malicious ``.pt``, an edited lookback, a
null in a scaler, a dropped symbol: each is one line naming the file and the mismatch."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from cappuccino.bundles import load_policy
from cappuccino.bundles.manifest import TrainPeriod, read_weights
from cappuccino.bundles.rl import load_bundle, save_bundle
from cappuccino.config.rl import PPOSettings
from cappuccino.training.rl.ppo import build_policy
from cappuccino.workflows.backtest import evaluate

from ..training.rl.helpers import make_env, random_market

PERIOD = TrainPeriod(start="2020-09-13T12:00:00+00:00", end="2020-09-20T00:00:00+00:00", n_bars=80)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    data = random_market(t=80, a=3, seed=7)
    env = make_env(data, lookback=2)
    torch.manual_seed(0)
    net = build_policy(env, PPOSettings(hidden_sizes=[8]))
    return save_bundle(tmp_path / "b", net, data=data, env_settings=env.settings, rules=env.rules,
                       scaler=env.scaler, config={}, history=[], train_period=PERIOD)  # fmt: skip


def _edit(path: Path, change, reseal: bool = False) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((path / "bundle.json").read_text())
    change(meta)
    if reseal:  # a deliberate edit that also recomputes the checksum
        body = {k: v for k, v in meta.items() if k != "checksum"}
        meta["checksum"] = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
    (path / "bundle.json").write_text(json.dumps(meta))


def _one_line(exc: pytest.ExceptionInfo[ValueError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_a_clean_bundle_loads_and_records_what_loading_checks(bundle: Path) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    assert meta["format"] == "cappuccino.rl-bundle/2" and len(meta["checksum"]) == 64
    assert meta["files"] == {
        "policy.pt": hashlib.sha256((bundle / "policy.pt").read_bytes()).hexdigest()
    }
    assert {"torch", "numpy", "polars", "ta-lib", "python"} <= set(meta["versions"])
    assert len(meta["feature_code"]) == 64
    b = load_bundle(bundle)
    assert b.manifest.train_period == PERIOD and b.symbols == ("A0/USDT", "A1/USDT", "A2/USDT")


def test_a_changed_weights_file_is_refused(bundle: Path) -> None:
    state = read_weights(bundle / "policy.pt")
    state["log_std"] = state["log_std"] + 1.0
    torch.save(state, bundle / "policy.pt")
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    msg = _one_line(exc)
    assert msg.startswith(f"{bundle / 'policy.pt'}: sha256 ") and "changed after the bundle" in msg


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m["env"].update(lookback=5), "edited after it was written"),
        (lambda m: m["symbols"].reverse(), "edited after it was written"),
        (lambda m: m["scaler"]["center"].__setitem__(0, None), "edited after it was written"),
    ],
)
def test_an_edited_manifest_is_refused(bundle: Path, change, expected: str) -> None:  # type: ignore[no-untyped-def]
    _edit(bundle, change)
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    assert _one_line(exc).startswith(f"{bundle / 'bundle.json'}: {expected}")


def test_a_resealed_edit_still_fails_its_own_consistency_checks(bundle: Path) -> None:
    _edit(bundle, lambda m: m["env"].update(lookback=5), reseal=True)
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    msg = _one_line(exc)
    assert "lookback 5, 3 symbols and 2 features give 34-float observations" in msg
    assert "the policy takes 16" in msg  # 1 + 3 + 2 * 3 * 2
    _edit(bundle, lambda m: (m["env"].update(lookback=2),
                             m["scaler"]["center"].__setitem__(4, None)), reseal=True)  # fmt: skip
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    assert _one_line(exc).endswith("scaler: center[4]: got None, expected a finite number")
    _edit(bundle, lambda m: (m["scaler"]["center"].__setitem__(4, 0.0), m["symbols"].pop()),
          reseal=True)  # fmt: skip
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    assert "give 11-float observations and 2 actions" in _one_line(exc)


def test_other_library_versions_need_the_override(bundle: Path) -> None:
    _edit(bundle, lambda m: m["versions"].update(numpy="0.0.1"), reseal=True)
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    msg = _one_line(exc)
    assert "written with numpy 0.0.1 (now " in msg and "--allow-version-mismatch" in msg
    assert load_policy(bundle, allow_version_mismatch=True).kind == "rl"


def test_changed_feature_code_is_refused(bundle: Path) -> None:
    _edit(bundle, lambda m: m.update(feature_code="0" * 64), reseal=True)
    with pytest.raises(ValueError) as exc:
        load_bundle(bundle)
    assert "feature set 'cappuccino14' was code 000000000000... when written" in _one_line(exc)


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this must never run",))


@pytest.mark.parametrize("kind", ["truncated", "malicious", "not torch"])
def test_truncated_or_malicious_weights_are_one_line(tmp_path: Path, kind: str) -> None:
    f = tmp_path / "policy.pt"
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    if kind == "truncated":
        f.write_bytes(good.read_bytes()[:40])
    elif kind == "malicious":
        torch.save({"w": _Boom()}, f, pickle_module=pickle)
    else:
        f.write_text("hello")
    with pytest.raises(ValueError) as exc:
        read_weights(f)
    assert _one_line(exc).startswith(f"{f}: not a loadable state dict (")
    assert read_weights(good)["w"].tolist() == [1.0, 1.0, 1.0]


def test_a_dropped_symbol_in_the_data_is_named(bundle: Path) -> None:
    data = random_market(t=80, a=2, seed=7)
    with pytest.raises(ValueError) as exc:
        evaluate(data, load_policy(bundle), benchmarks=["cash"])
    assert _one_line(exc) == (
        f"bundle {bundle}: symbols (in order) is ['A0/USDT', 'A1/USDT', 'A2/USDT'] in the "
        "bundle, ['A0/USDT', 'A1/USDT'] in the data"
    )
