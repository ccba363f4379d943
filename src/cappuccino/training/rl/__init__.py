"""Reinforcement learning: batched trading env, rewards, policies, PPO, bundles, SB3 bridge."""
