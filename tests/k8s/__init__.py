"""Tests against a real Kubernetes control plane (see cluster.py)."""
