"""Training: the supervised trainer and run, and in ``rl`` the trading environment, PPO and
encoder pretraining. It never imports evaluation; workflows compose the two."""
