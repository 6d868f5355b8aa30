"""Numerical MLS-MPM in Taichi. Knows nothing of torch or Qt."""
