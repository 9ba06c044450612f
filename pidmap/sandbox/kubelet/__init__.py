"""The kubelet room: the stand-in kubelet, in the order a pod flows through it.

agent (``Kubelet``: what the API server calls, contracts.Kubelet) -> pod_worker (one pod: restart
policy, back-off, statuses, phase) -> runtime (the CRI-shaped ``Runtime`` protocol, the worker's
only way to act) -> ctr (the real runtime: the node's containerd, driven with ``ctr``). Beside
them: health (is each node container running?) and images (image names, the local images).
"""
