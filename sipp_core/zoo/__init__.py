"""The networks: the model zoo (models), how a zoo model is trained (train), and what a network's
prunable layers are, by qualified name (layers). Everything else builds on these."""
