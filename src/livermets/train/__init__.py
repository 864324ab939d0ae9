"""Training: slice data and sampling, losses, the trainer loop, checkpoints, DDP."""
