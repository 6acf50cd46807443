"""The fault matrix: real services behind toxiproxy, faults at chosen requests, one invariant checker."""
