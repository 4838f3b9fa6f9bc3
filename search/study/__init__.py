"""The Optuna study as the leaderboard: recording members, rows, storages, artifacts, plots, dashboard."""
