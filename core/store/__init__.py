"""Storage backends for flow and run records, chosen by URL."""
