"""Optuna studies: search spaces, objectives over CV segments, storage with heartbeat."""
