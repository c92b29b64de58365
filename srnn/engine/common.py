"""What every engine's training step shares, backend-free."""

GRAD_CLIP = 1.0  # elementwise, as the reference


def use_xla(cfg):
    """XLA fuses the many small per-timestep ops of a small model into one program (several
    times faster); for large models the big matmuls dominate and XLA gains nothing on TensorFlow,
    so plain TensorFlow graphs are used there (JAX always compiles through XLA)."""
    return max(cfg.dim, cfg.slowdim) <= 512
