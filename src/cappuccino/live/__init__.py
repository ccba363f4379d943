"""Paper and live trading through a broker, on the shared market runtime (``market/``,
``policies/``, ``bundles/``): the session state; the clock, bar feed, brokers, runner and
reconciliation build on it."""
