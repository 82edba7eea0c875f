"""The OANDA v20 venue adapter: everything MBATS says to OANDA (or to its simulator) goes through here.

One file per concern, as nautilus_trader lays out its adapters:

- :mod:`.config` — :class:`OandaConfig`, the environment, account and token, read once from Settings;
- :mod:`.client` — :func:`make_client`, the one factory for the REST client and its streaming client
  (rate cap, retries, exactly-once order sends, errors a user can act on);
- :mod:`.candles` — candle requests and validated candle frames (downloads and live backfill);
- :mod:`.data` — the pricing stream turned into complete bars, and the backtrader live feed;
- :mod:`.execution` — the backtrader broker trading the account;
- :mod:`.reconcile` — start-up reconciliation of the account with the risk database;
- :mod:`.instruments` — the account's instruments and the provenance labels of this venue's data.

Submodules are imported where used: backtrader (data, execution) is heavy.
"""
