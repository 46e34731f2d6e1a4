"""The training engine the train and distill jobs share: Ray Train workers stepping one DeepSpeed engine over a
task (`fit_loop.FitTask`), the rows they read, validation and checkpoints."""
