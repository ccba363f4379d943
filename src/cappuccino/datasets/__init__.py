"""Arrays for training: aligned market arrays, index-based windows, chronological splits."""
