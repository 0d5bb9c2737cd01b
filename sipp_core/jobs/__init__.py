"""Long runs built on the pipeline: sweeps over keep ratios and methods (sweeps), prune-retrain
cascades and train-in-isolation runs (retrain), and the run history they are saved to (history)."""
