"""The trained checkpoints, shipped as package data (``switchboard.core.config.models_dir``)."""
