"""The Kubernetes layer of the core, shared by the runner and the operator.

* :mod:`.client`: the typed door to the API (``KubeApi``, ``RestKube`` and its transports);
* :mod:`.actions`: what a person asks of a DataFlow (run now, suspend, resume), with their own credentials;
* :mod:`.names`: labels, annotations, Secret variables and run names both sides derive alike;
* :mod:`.status`: the DataFlow status and DataFlowRun models, and the builders of every status write.
"""
