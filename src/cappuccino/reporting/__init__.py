"""Reporting: figures and tables for every page (backtest, campaign, study, compare)."""
