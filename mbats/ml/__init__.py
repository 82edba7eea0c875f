"""The machine-learning lifecycle: features, walk-forward training, the model registry
(``@challenger`` → ``@champion``), serving over REST and a strategy that trades on the model."""
