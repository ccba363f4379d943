"""Training: the supervised trainer and, in ``rl``, the trading environment and PPO."""
