"""Evaluation: metrics (leaf), backtests through the market core, reports."""
