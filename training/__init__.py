"""The Stem-JEPA trainer: corpus, datasets, cache, sampler, the two-phase loop and the evaluation."""
