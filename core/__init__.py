"""ActiveDataFlow for Kubernetes: scheduled source -> transform -> sink pipelines."""

__version__ = "0.1.0"
