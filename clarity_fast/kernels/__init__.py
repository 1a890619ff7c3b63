"""Numba-compiled kernels: filters, local maxima, patch gathering, duplicate suppression, prefix matching."""
