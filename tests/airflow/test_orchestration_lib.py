"""The library side of the DAGs (mbats.orchestration, mbats.risk.eod): no Airflow needed."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone

import numpy as np
import pytest

from mbats.errors import MbatsError
from mbats.orchestration.deployments import DeploymentsError, load_deployments
from mbats.orchestration.sweep import SweepConfError, normalize_conf
from mbats.research.grid import expand_grid, label


def _write(tmp_path, text: str):
    path = tmp_path / "deployments.yaml"
    path.write_text(textwrap.dedent(text))
    return path


ENTRY = """
deployments:
  - name: night
    strategy: sma_crossover
    instruments: EUR_USD
    mode: live
    account: "${TEST_MBATS_ACCOUNT}"
    schedule: "0 22 * * 0-4"
    session: {start: 22:00, end: 06:00, timezone: Europe/London}
"""


def test_deployment_session_crossing_midnight_and_unquoted_times(tmp_path, monkeypatch):
    (dep,) = load_deployments(_write(tmp_path, ENTRY))  # unquoted 22:00 is YAML 1.1 sexagesimal 1320
    assert dep.instruments == ("EUR_USD",) and dep.dag_id == "live_night"
    start, end = dep.session.window(datetime(2026, 1, 13, 23, 0, tzinfo=timezone.utc))
    assert (start.isoformat(), end.isoformat()) == ("2026-01-13T22:00:00+00:00", "2026-01-14T06:00:00+00:00")
    with pytest.raises(DeploymentsError, match=r"\$\{TEST_MBATS_ACCOUNT\}, which is not set"):
        dep.resolved_account()
    monkeypatch.setenv("TEST_MBATS_ACCOUNT", "101-001-1")
    assert dep.resolved_account() == "101-001-1"


@pytest.mark.parametrize("change, message", [
    (("mode: live", "mode: live\n    enabled: yes-please"), "enabled must be true or false"),
    (("instruments: EUR_USD", "instruments: [EURUSD]"), "not an OANDA symbol"),
    (("timezone: Europe/London", "timezone: Mars/Olympus"), "not an IANA time zone"),
    (("schedule: \"0 22 * * 0-4\"", "schedule: \"every night\""), "not a 5-field cron"),
    (("    account: \"${TEST_MBATS_ACCOUNT}\"\n", ""), "a live deployment needs an account"),
    (("name: night", "name: Night-1"), "name must be lower-case"),
])
def test_deployment_mistakes_name_the_entry_and_field(tmp_path, change, message):
    path = _write(tmp_path, ENTRY.replace(*change))
    with pytest.raises(DeploymentsError, match=message) as info:
        load_deployments(path)
    assert str(path) in str(info.value)


def test_duplicate_deployment_names_are_rejected(tmp_path):
    text = ENTRY + ENTRY.split("deployments:")[1]
    with pytest.raises(DeploymentsError, match="appears twice"):
        load_deployments(_write(tmp_path, text))


def test_sweep_conf_expands_grid_and_ranges_and_validates(pg_server):
    conf = normalize_conf({"strategy": "sma_crossover", "instruments": "eur_usd",
                           "grid": {"fast": [5, 10]}, "ranges": {"slow": {"start": 20, "stop": 40, "step": 10}}})
    configs = expand_grid(conf["grid"])
    assert conf["instruments"] == ["EUR_USD"] and conf["sweep_id"].startswith("sweep-")
    assert len(configs) == 6 and configs[0] == {"fast": 5, "slow": 20} and configs[-1] == {"fast": 10, "slow": 40}
    assert label(configs[1]) == "fast=5 slow=30"
    with pytest.raises(SweepConfError, match="grid parameter 'nope'"):
        normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD"], "grid": {"nope": [1]}})
    # 10,000 configurations: the compiled core scores them; 1,000,000 is over its limit too
    assert len(expand_grid(normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD"], "ranges": {
        "fast": {"start": 1, "stop": 100}, "slow": {"start": 101, "stop": 200}}})["grid"])) == 10_000
    with pytest.raises(SweepConfError, match="limit is 100,000"):
        normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD"],
                        "ranges": {"fast": {"start": 1, "stop": 1000}, "slow": {"start": 1, "stop": 1000}}})
    with pytest.raises(SweepConfError, match="limit is 1,000 .*cannot model"):  # several instruments: no core
        normalize_conf({"strategy": "sma_crossover", "instruments": ["EUR_USD", "GBP_USD"],
                        "ranges": {"fast": {"start": 1, "stop": 100}, "slow": {"start": 101, "stop": 200}}})
    with pytest.raises(MbatsError):
        normalize_conf({"strategy": "no_such_strategy", "instruments": ["EUR_USD"], "grid": {"fast": [1]}})


def test_historical_var_and_cvar_on_a_known_distribution():
    from mbats.risk.eod import _var_cvar

    pnl = np.arange(-50, 50, dtype=float)  # 100 equally likely outcomes: -50 … 49
    var, cvar = _var_cvar(pnl, 0.95)
    assert var == 46.0  # the 5th worst loss (lower quantile)
    assert cvar == pytest.approx(np.mean([50, 49, 48, 47, 46]))
    assert _var_cvar(np.array([]), 0.99) == (0.0, 0.0)
