"""Tests against the real control plane use the fixtures of tests/conftest.py:

``kube``         session-scoped :class:`tests.k8s.cluster.Cluster`, started once per test session
``kube_crds``    the same cluster with ``crds/`` applied and Established
``namespace``    a fresh namespace for one test, deleted afterwards
"""
