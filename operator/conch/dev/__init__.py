"""Development support: a real local Kubernetes control plane for tests and the sandbox."""
