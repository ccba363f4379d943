"""Metrics (leaf): returns and risk figures with explicit units and conventions
(:mod:`~cappuccino.metrics.returns`), and classification and ranking metrics
(:mod:`~cappuccino.metrics.classification`). Pure NumPy; one Sharpe definition."""
