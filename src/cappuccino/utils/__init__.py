"""Leaf utilities: atomic file writes, seeding, devices, logging."""
