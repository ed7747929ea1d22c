"""Training embeddings from one photo per coin: in-memory cache, re-photography augmentation,
metric-learning losses (pytorch-metric-learning), per-epoch validation, checkpoints."""
