"""The cluster room: what ``pidmap sandbox up|down|status`` does, outside any request.

lifecycle (up, down, status: node containers, the API server process, the kubeconfig), layout (the
state directory and the cluster spec saved in it), image (the node image and the pod images its
containerd runs), certs (the API server's CA and certificates), kubeconfig (the context kubectl
uses), cgroups (the node-side cgroup trees that down removes).
"""
