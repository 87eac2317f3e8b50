"""Conch: serve trained PyTorch models on Kubernetes through NVIDIA Triton."""

__version__ = "0.1.0"
