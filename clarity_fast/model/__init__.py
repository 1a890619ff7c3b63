"""Stage 2: the patch classifier, its training data, training loop and cross-validation (needs torch)."""
