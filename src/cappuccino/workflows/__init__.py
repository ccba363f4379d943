"""Workflows: the only code that composes stages: supervised training with its signal
backtest, backtests, campaigns, A/B comparisons, studies and the demo. Stage packages
(data, features, training, evaluation, tuning, ...) never import each other sideways;
they meet here."""
