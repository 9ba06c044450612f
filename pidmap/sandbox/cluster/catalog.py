"""The pod images the sandbox's nodes can run, as their configs say (data only: image.py builds
them, the kubelet resolves the images pods ask for against them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PodImage:
    """One image the sandbox's nodes can run, as its config says (what `crictl inspecti` shows)."""

    repository: str  # normalized: library/busybox, luksa/kubia, registry.k8s.io/pause
    reference: str  # the name it is imported under
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str = "/"


BUSYBOX = PodImage("library/busybox", "docker.io/library/busybox:latest", (), ("sh",))
KUBIA = PodImage("luksa/kubia", "docker.io/luksa/kubia:latest", ("node", "app.js"), ())
PAUSE = PodImage("registry.k8s.io/pause", "registry.k8s.io/pause:3.10", ("/pause",), ())
DISTROLESS = PodImage("gcr.io/distroless/static", "gcr.io/distroless/static:latest", (), ("/app",))
POD_IMAGES = {image.repository: image for image in (BUSYBOX, KUBIA, PAUSE, DISTROLESS)}
