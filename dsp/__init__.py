"""Pure, synchronous DSP kernels over NumPy arrays (no gateway imports)."""
