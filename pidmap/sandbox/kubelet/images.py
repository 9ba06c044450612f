"""Image names as kubelet reads them, and the local images that stand for them (no registry here)."""

from __future__ import annotations

from typing import Any

from pidmap.sandbox.cluster.catalog import POD_IMAGES, PodImage

IMAGE_UNAVAILABLE = "the sandbox runs only busybox, luksa/kubia, registry.k8s.io/pause and " \
    "gcr.io/distroless/static (offline)"


def normalize_image(image: str) -> tuple[str, str]:
    """``busybox:1.36`` -> (``library/busybox``, ``docker.io/library/busybox:1.36``)."""
    name, digest = [*image.split("@", 1), ""][:2]
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    registry = "docker.io"
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        registry, name = name.split("/", 1)
    if registry == "docker.io" and "/" not in name:
        name = f"library/{name}"
    suffix = f"@{digest}" if digest else f":{tag or 'latest'}"
    return (name if registry == "docker.io" else f"{registry}/{name}"), f"{registry}/{name}{suffix}"


def resolve_image(image: str) -> tuple[str, PodImage] | None:
    """(the reference Kubernetes reports, the local image that stands for it); None: not here."""
    repository, reference = normalize_image(image)
    local = POD_IMAGES.get(repository)
    return (reference, local) if local else None


def container_argv(container: dict[str, Any], image: PodImage) -> list[str]:
    """Kubernetes' rule: command replaces the entrypoint, args replace the image's cmd."""
    command = container.get("command")
    args = container.get("args")
    if command:
        return [*command, *(args or [])]
    return [*image.entrypoint, *(args if args is not None else image.cmd)]
