"""Training: the loop, checkpoints, where it runs (CPU, CUDA, torchrun), and the teachers."""
