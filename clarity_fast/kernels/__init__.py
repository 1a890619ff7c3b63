"""Numba-compiled kernels: filters, local maxima, patch gathering."""
