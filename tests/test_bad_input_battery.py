"""The CLI contract under attack: every command, driven through bad inputs, answers with one
line on stderr, exit 2 (bad input) or 3 (unreachable service), and never a traceback."""

from __future__ import annotations

import gzip
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cappuccino.cli.main import app

runner = CliRunner()
DATA = Path(__file__).parents[1].parent / "shared/data/binance_1h"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad")
    store = d / "store"
    assert runner.invoke(app, ["data", "sample", "--store", str(store), "--json"]).exit_code == 0
    (d / "syntax.yaml").write_text("seed: 0\nppo:\n  lr: [1, 2\n")
    (d / "range.yaml").write_text("seed: -3\n")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "adir.csv").mkdir()
    with gzip.open(d / "bars.csv.gz", "wt") as f:
        f.write("not,really\n1,2\n")
    (d / "bars.gz").write_bytes((d / "bars.csv.gz").read_bytes())
    (d / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    port = _closed_port()
    return {
        "store": str(store),
        "dir": str(d),
        "pg": f"postgresql://user@127.0.0.1:{port}/cappuccino",
        "http": f"http://127.0.0.1:{port}",
    }


SYNTAX = "syntax.yaml:4:1: YAML syntax error"
# (id, argv with {placeholders}, exit code, text the one stderr line must contain)
CASES: list[tuple[str, list[str], int, str]] = [
    # usage errors: one line, not click's boxed block
    ("log-level", ["--log-level", "LOUD", "models", "list"], 2, "--log-level: got 'LOUD'"),
    ("threads", ["--threads", "many", "models", "list"], 2, "--threads"),
    ("unknown-option", ["data", "info", "--store", "{store}", "--frobnicate"], 2,
     "No such option: --frobnicate"),
    ("missing-option", ["data", "info"], 2, "Missing option '--store'"),
    ("int-option", ["data", "import", "x.csv", "--store", "{store}", "--max-fill-bars", "many"],
     2, "--max-fill-bars"),
    # data
    ("import-missing-file", ["data", "import", "{dir}/nope.csv", "--store", "{dir}/s1"], 2,
     "nope.csv"),
    ("import-directory", ["data", "import", "{dir}/adir.csv", "--store", "{dir}/s1"], 2,
     "adir.csv: got 'a directory', expected a CSV or Parquet file"),
    ("import-gzip", ["data", "import", "{dir}/bars.gz", "--store", "{dir}/s1"], 2,
     "bars.gz: got 'a gzip-compressed file'"),
    ("import-bad-policy", ["data", "import", str(DATA / "Binance_DOTUSDT_1h.csv"), "--store",
                           "{dir}/s1", "--on-gap", "sometimes"], 2, "on_gap: got 'sometimes'"),
    ("import-bad-timeframe", ["data", "import", str(DATA / "Binance_DOTUSDT_1h.csv"), "--store",
                              "{dir}/s1", "--timeframe", "7 fortnights"], 2, "7 fortnights"),
    ("import-bad-date", ["data", "import", str(DATA / "Binance_DOTUSDT_1h.csv"), "--store",
                         "{dir}/s1", "--not-before", "last tuesday"], 2,
     "--not-before: got 'last tuesday'"),
    ("sample-store-is-a-file", ["data", "sample", "--store", "{dir}/syntax.yaml"], 2,
     "syntax.yaml: got 'a file', expected a store folder (--store)"),
    ("resample-not-multiple", ["data", "resample", "--store", "{store}", "--to", "90m"], 2,
     "--to: got 90m, expected a whole multiple of --from 1h"),
    ("resample-bad-timeframe", ["data", "resample", "--store", "{store}", "--to", "fortnight"], 2,
     "--to: got 'fortnight', expected <n><m|h|d|w>"),
    ("resample-no-source", ["data", "resample", "--store", "{store}", "--from", "15m", "--to",
                            "1h"], 2, "--from: no 15m bars in store"),
    ("resample-bad-symbol", ["data", "resample", "--store", "{store}", "--to", "4h", "-s",
                             "DOGE/EUR"], 2, "symbols: got 'DOGE/EUR', expected one of"),
    ("synthetic-real-store", ["data", "synthetic", "--store", "{store}", "--symbols", "2"], 2,
     "holds real bars; synthetic bars go to a store of their own"),
    ("synthetic-no-symbols", ["data", "synthetic", "--store", "{dir}/syn", "--symbols", "0"], 2,
     "--symbols: got 0, expected 1 to 1000"),
    ("synthetic-bad-years", ["data", "synthetic", "--store", "{dir}/syn", "--years", "-1"], 2,
     "--years: got -1.0, expected > 0"),
    ("synthetic-bad-start", ["data", "synthetic", "--store", "{dir}/syn", "--start", "soon"], 2,
     "--start: got 'soon', expected an ISO date"),
    ("resample-no-store", ["data", "resample", "--store", "{dir}/nowhere", "--to", "4h"], 2,
     "--store: {dir}/nowhere: no such store folder"),
    ("info-no-store", ["data", "info", "--store", "{dir}/nowhere"], 2, "nowhere"),
    ("verify-no-store", ["data", "verify", "--store", "{dir}/nowhere"], 2, "nowhere"),
    ("download-bad-since", ["data", "download", "-s", "BTC/USDT", "--store", "{dir}/s2",
                            "--since", "2021-13-45"], 2, "--since: got '2021-13-45'"),
    ("download-unreachable", ["data", "download", "-s", "BTC/USDT", "--store", "{dir}/s2",
                              "--since", "2021-01-01", "--base-url", "{http}", "--retries", "0"],
     3, "exchange unreachable"),
    # features and models
    ("features-bad-set", ["features", "build", "--store", "{store}", "--feature-set", "nope",
                          "--out", "{dir}/f.parquet"], 2, "nope"),
    ("features-bad-symbol", ["features", "build", "--store", "{store}", "--feature-set", "nn23",
                             "--symbols", "DOGE/EUR", "--out", "{dir}/f.parquet"], 2, "DOGE/EUR"),
    ("features-bad-label", ["features", "build", "--store", "{store}", "--feature-set", "nn23",
                            "--label", "tomorrow", "--out", "{dir}/f.parquet"], 2, "tomorrow"),
    ("features-audit-cuts", ["features", "audit", "--store", "{store}", "--feature-set", "nn23",
                             "--cuts", "0"], 2, "--cuts"),
    ("features-audit-tf", ["features", "audit", "--store", "{store}", "--feature-set", "nn23",
                           "--timeframe", "3d"], 2, "3d"),
    ("features-mtf-order", ["features", "audit", "--store", "{store}", "--feature-set",
                            "nn23+1d+4h"], 2, "4h follows 1d"),
    ("features-mtf-misfit", ["features", "build", "--store", "{store}", "--feature-set",
                             "nn23+90m", "--out", "{dir}/f.parquet"], 2,
     "+90m: got 90m, expected a whole multiple of the bars' timeframe 1h"),
    ("features-list-extra", ["features", "list", "nn23"], 2, "unexpected extra argument"),
    ("models-describe", ["models", "describe", "transformer9000"], 2, "transformer9000"),
    # configs: YAML syntax, ranges and types, shapes, overrides
    ("demo-yaml-syntax", ["demo", "--config", "{dir}/syntax.yaml"], 2, SYNTAX),
    ("demo-range", ["demo", "--config", "{dir}/range.yaml"], 2,
     "range.yaml: seed: got -3, input should be greater than or equal to 0"),
    ("demo-not-a-mapping", ["demo", "--config", "{dir}/list.yaml"], 2, "expected a mapping"),
    ("demo-binary-config", ["demo", "--config", "{dir}/binary.yaml"], 2, "binary.yaml"),
    ("demo-missing-config", ["demo", "--config", "{dir}/nope.yaml"], 2, "nope.yaml"),
    ("demo-set-type", ["demo", "--set", "seed=abc"], 2, "seed: got 'abc'"),
    ("demo-set-form", ["demo", "--set", "seed"], 2, "--set: got 'seed', expected key.path=value"),
    ("demo-set-yaml", ["demo", "--set", "seed=[1"], 2, "--set seed: got '[1'"),
    ("train-yaml-syntax", ["train", "{dir}/syntax.yaml"], 2, SYNTAX),
    ("train-range", ["train", "--set", "train.epochs=0"], 2, "train.epochs: got 0"),
    ("rl-train-syntax", ["rl", "train", "{dir}/syntax.yaml"], 2, SYNTAX),
    ("rl-train-type", ["rl", "train", "--set", "ppo.total_timesteps=lots"], 2,
     "ppo.total_timesteps: got 'lots'"),
    ("rl-pretrain-syntax", ["rl", "pretrain-encoder", "{dir}/syntax.yaml"], 2, SYNTAX),
    ("rl-compare-syntax", ["rl", "compare", "{dir}/syntax.yaml"], 2, SYNTAX),
    ("rl-compare-stages", ["rl", "compare", "--set", "arms=[mlp,mappo]", "--set",
                           "mappo_stages=[master,joint]"], 2,
     "mappo_stages: got ['master', 'joint'], expected the symbols stage first"),
    ("rl-train-mappo-parent", ["rl", "train", "--set", "mappo.stage=joint"], 2,
     "mappo: parent: stage 'joint' starts from the previous stage's bundle"),
    ("campaign-seeds", ["campaign", "baseline", "--seeds", "one,two"], 2, "--seeds: got 'one,two'"),
    # tuning: an unreachable PostgreSQL is exit 3 on every tune command
    ("tune-syntax", ["tune", "{dir}/syntax.yaml"], 2, SYNTAX),
    ("tune-pg", ["tune", "--storage", "{pg}", "--n-trials", "1"], 3, "database unreachable"),
    ("tune-warm-start-unknown", ["tune", "--storage", "sqlite:///{dir}/none.db", "--warm-start",
                                 "old"], 2, "--warm-start: got 'old', no such study in sqlite"),
    ("tune-narrow-unknown", ["tune", "--storage", "sqlite:///{dir}/none.db", "--narrow-from",
                             "old"], 2, "--narrow-from: got 'old', no such study in sqlite"),
    ("tune-report-pg", ["tune", "report", "--storage", "{pg}", "--study-name", "s"], 3,
     "database unreachable"),
    ("tune-best-pg", ["tune", "best", "--storage", "{pg}", "--study-name", "s", "--out",
                      "{dir}/best"], 3, "database unreachable"),
    ("train-mlflow-unreachable", ["train", "--set", "tracking_uri={http}",
                                  "--set", "data.store={store}"], 3,
     "MLflow tracking server unreachable: {http} (connection refused)"),
    # backtest and predict
    ("backtest-no-bundle", ["backtest", "--store", "{store}", "--policy", "{dir}/nobundle"], 2,
     "nobundle"),
    ("backtest-bad-fee", ["backtest", "--store", "{store}", "--policy", "cash", "--fee", "lots"],
     2, "--fee"),
    ("backtest-bad-date", ["backtest", "--store", "{store}", "--policy", "cash", "--start",
                           "soon"], 2, "--start: got 'soon'"),
    ("backtest-not-a-bundle", ["backtest", "--store", "{store}", "--policy", "{dir}/adir.csv"], 2,
     "adir.csv: not a bundle (no bundle.json)"),
    ("predict-no-bundle", ["predict", "{dir}/nobundle", "--store", "{store}", "--out",
                           "{dir}/p.parquet"], 2, "nobundle"),
    # paper trading
    ("paper-run-bad-replay", ["paper", "run", "--policy", "cash", "--symbols", "BTC/USDT",
                              "--state", "{dir}/p.db", "--store", "{store}", "--replay",
                              "2021-06-01", "soon"], 2, "--replay END: got 'soon'"),
    ("paper-run-alpaca-no-keys", ["paper", "run", "--broker", "alpaca", "--policy", "cash",
                                  "--symbols", "BTC/USDT", "--state", "{dir}/p.db", "--store",
                                  "{store}", "--replay", "2021-06-01", "2021-06-02"], 2,
     "set APCA_API_KEY_ID and APCA_API_SECRET_KEY"),
    ("paper-status-no-state", ["paper", "status"], 2, "Missing option '--state'"),
    ("paper-orders-a-directory", ["paper", "orders", "--state", "{dir}/adir.csv"], 2,
     "adir.csv: is a directory, expected a session's state file"),
    ("rl-explain-not-a-bundle", ["rl", "explain", "{dir}", "--store", "{store}", "--out",
                                 "{dir}/x"], 2, "not a bundle (no bundle.json)"),
    # monitoring
    ("dashboard-no-source", ["dashboard"], 2, "--storage, --state or --mlflow: got none"),
    ("dashboard-exposed-without-token", ["dashboard", "--state", "{dir}/p.db", "--host",
                                         "0.0.0.0"], 2, "set CAPPUCCINO_DASHBOARD_TOKEN"),
    ("dashboard-storage-down", ["dashboard", "--storage", "{pg}"], 3, "database unreachable"),
    ("monitor-not-a-storage", ["monitor", "--once", "--storage", "sqlite:///{dir}/list.yaml"], 2,
     "not an Optuna storage"),
    ("monitor-json-needs-once", ["monitor", "--state", "{dir}/p.db", "--json"], 2,
     "--json: needs --once"),
    ("report-status-bad-out", ["report", "status", "--state", "{dir}/p.db", "--out", "{dir}/r.txt"],
     2, "expected a .md or .html file"),
    ("report-status-ab-not-json", ["report", "status", "--state", "{dir}/p.db", "--ab",
                                   "{dir}/list.yaml", "--out", "{dir}/r.md"], 2, "not JSON"),
    ("report-runs-server-down", ["report", "runs", "--tracking-uri", "{http}", "--out",
                                 "{dir}/r.html"], 3, "MLflow tracking server unreachable"),
    ("report-runs-no-store", ["report", "runs", "--tracking-uri", "sqlite:///{dir}/none.db",
                              "--out", "{dir}/r.html"], 2, "none.db: no such file"),
]  # fmt: skip


@pytest.fixture
def no_ccxt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt now raises ImportError


def _check(res: object, code: int, text: str) -> None:
    out, err = res.stdout, res.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in out + err, err
    assert res.exit_code == code, (res.exit_code, err)  # type: ignore[attr-defined]
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]
    assert out == "", out  # nothing but results on stdout, and there is no result


@pytest.mark.parametrize(
    ("argv", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_and_the_right_exit_code(
    inputs: dict[str, str], argv: list[str], code: int, text: str
) -> None:
    env: dict[str, str | None] = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
                                  "APCA_API_KEY_ID": None, "APCA_API_SECRET_KEY": None,
                                  "CAPPUCCINO_DASHBOARD_TOKEN": None}  # fmt: skip
    res = runner.invoke(app, [a.format(**inputs) for a in argv], env=env)
    _check(res, code, text.format(**inputs))


def test_a_missing_ccxt_names_the_extra(inputs: dict[str, str], no_ccxt: None) -> None:
    res = runner.invoke(app, ["data", "download", "-s", "BTC/USDT", "--store", f"{inputs['dir']}/s3",
                              "--since", "2021-01-01"])  # fmt: skip
    _check(res, 2, "pip install 'cappuccino[live]'")


def test_every_command_is_in_the_battery() -> None:
    """A new command joins the battery: each one (but build-sample, for maintainers) has a case."""
    import typer.main

    root = typer.main.get_command(app)

    def leaves(cmd: object, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            yield path
            return
        for name, sub in subs.items():
            if not getattr(sub, "hidden", False):
                yield from leaves(sub, (*path, name))

    def path_of(argv: list[str]) -> tuple[str, ...]:
        cmd, path = root, ()
        for a in argv:
            subs = getattr(cmd, "commands", None)
            if subs is None:
                break
            if a in subs:
                cmd, path = subs[a], (*path, a)
        if path == ("tune",):  # `tune CONFIG` is `tune run CONFIG`
            path = ("tune", "run")
        return path

    tested = {path_of(c[1]) for c in CASES} | {("data", "download")}
    missing = [p for p in leaves(root, ()) if p not in tested]
    assert missing == []


def _commands() -> Iterator[tuple[str, object]]:
    import typer.main

    def walk(cmd: object, path: str) -> Iterator[tuple[str, object]]:
        yield path, cmd
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, f"{path} {name}")

    yield from walk(typer.main.get_command(app), "cappuccino")


def test_help_documents_every_option() -> None:
    undocumented = [
        f"{path} {'/'.join(p.opts)}"
        for path, cmd in _commands()
        for p in getattr(cmd, "params", [])
        if p.param_type_name == "option"
        and not getattr(p, "hidden", False)
        and not (getattr(p, "help", None) or "").strip()
    ]
    assert undocumented == []


def _help(*argv: str) -> str:
    res = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    return " ".join(res.stdout.replace("│", " ").split())


def test_help_texts_say_what_they_must() -> None:
    assert "pip install 'cappuccino[live]'" in _help("data", "download")
    assert "(needs )" not in _help("data", "download")
    assert "cappuccino tune CONFIG" in _help("tune")
    demo = _help("demo")
    for step in ("import", "features", "labels", "lookahead audit", "classifier", "PPO",
                 "backtest", "study", "A/B", "report"):  # fmt: skip
        assert step in demo, step
    sets = _help("rl", "train")
    assert "Keys:" in sets and "ppo.{" in sets and "seed" in sets
    assert "exactly one JSON document" in _help("backtest")
