"""Executing flows: connectors, transforms, the FlowExecutor, heartbeat."""
