"""Exporting a member as a standalone PyTorch model (spec + weights + a loader that needs only torch)."""
