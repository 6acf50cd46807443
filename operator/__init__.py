"""The kopf operator (importable only as ``activedataflow.operator``)."""
