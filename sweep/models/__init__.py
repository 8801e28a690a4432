"""PyTorch pieces with no knowledge of sweeps: networks, registries, per-layer statistics."""
