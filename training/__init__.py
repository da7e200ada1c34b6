"""The Stem-JEPA trainer: datasets, preprocessing cache, sampler (and, next, the training loop)."""
