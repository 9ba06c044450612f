"""pidmap: map the processes of a Kubernetes pod to their PIDs on the node and on the host."""

__version__ = "0.1.0"
