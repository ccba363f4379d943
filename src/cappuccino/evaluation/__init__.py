"""Evaluation: backtests through the market runtime (policies as one batch), the backtest
report, the degenerate-policy check, overfitting statistics (PSR, DSR, PBO) and A/B tests.
It never imports training; workflows compose the two."""
