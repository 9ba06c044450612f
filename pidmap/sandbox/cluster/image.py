"""The sandbox's images, built locally: the node image, and the pod images its containerd runs.

No registry is reachable, so every image is assembled from files of this machine:

* the **node image** (``layout.NODE_IMAGE``, a ``docker import`` of a root filesystem): a static
  busybox, kind's container runtime (Debian's ``containerd``, ``ctr``, ``containerd-shim-runc-v2``
  and ``runc``, each with the shared libraries ``ldd`` names), procps's ``ps``, containerd's config
  and ``/init``, which starts containerd as systemd does in a kind node;
* the **pod images**, written as one ``docker save``-format archive (manifest.json, image configs,
  layer tars) that ``ctr -n k8s.io images import -`` reads in every node: ``busybox``,
  ``luksa/kubia`` (``node app.js`` with Node.js and procps ``ps``, when the host has Node.js),
  ``registry.k8s.io/pause:3.10`` (a static pause and nothing else) and ``gcr.io/distroless/static``
  (one static program, no shell). They never become Docker images, so no tag on the shared engine
  can clash with them. The archive is cached under its inputs' hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pidmap.errors import DockerError, SandboxError
from pidmap.sandbox.cluster import layout
from pidmap.sandbox.cluster.catalog import BUSYBOX, DISTROLESS, KUBIA, PAUSE, PodImage

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")
# The container runtime of a kind node, at the paths kind's node image has them.
RUNTIME_BINARIES = {
    "containerd": "usr/local/bin/containerd",
    "ctr": "usr/local/bin/ctr",
    "containerd-shim-runc-v2": "usr/local/bin/containerd-shim-runc-v2",
    "runc": "usr/local/sbin/runc",
}
PROCPS_PS = Path("/usr/bin/ps")
# Label value 1 on the image; the node containers carry the sandbox name instead.
IMAGE_LABELS = {layout.OWNER_LABEL: "1"}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Bump when what goes into the pod images changes in a way their inputs' hash cannot see.
POD_IMAGES_FORMAT = "2"
POD_IMAGES_CACHE = Path(os.environ.get("PIDMAP_IMAGE_CACHE", "/var/tmp/pidmap-sandbox-images"))
_LDD_PATH = re.compile(r"(/\S+)")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n"


def _assets() -> Any:
    return resources.files("pidmap.sandbox").joinpath("assets")


def is_static_elf(path: Path) -> bool:
    """True when ``path`` is an ELF executable without a PT_INTERP (dynamic loader) header."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only: the machines this runs on
        return False
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for index in range(phnum):
        start = phoff + index * phentsize
        if int.from_bytes(data[start : start + 4], order) == 3:  # PT_INTERP
            return False
    return True


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and is_static_elf(path.resolve()):
            return path.resolve()
    raise SandboxError(
        "no statically linked busybox found (looked at " + ", ".join(BUSYBOX_CANDIDATES) + ")",
        hint="apt-get install busybox-static",
    )


def find_runtime() -> dict[str, Path]:
    """containerd, ctr, the runc v2 shim and runc on this machine (Debian's docker.io brings them)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in RUNTIME_BINARIES:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
        if path:
            found[name] = Path(path).resolve()
        else:
            missing.append(name)
    if not PROCPS_PS.is_file():
        missing.append("ps (procps)")
    if missing:
        raise SandboxError(f"the node image needs {', '.join(missing)}, not found on this machine",
                           hint="scripts/install-docker.sh (Debian: docker.io containerd runc procps)")
    return found


def shared_libraries(binary: Path) -> list[Path]:
    """Every library ``ldd`` lists for ``binary``, the dynamic loader included (vdso excluded)."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    libraries: list[Path] = []
    for line in result.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        target = line.split("=>", 1)[1] if "=>" in line else line
        match = _LDD_PATH.search(target)
        if match and Path(match.group(1)).exists():
            libraries.append(Path(match.group(1)))
    return libraries


def _copy_into(rootfs: Path, source: Path, relative: str | None = None) -> None:
    """Copy ``source`` to ``relative`` (default: its own absolute path) under ``rootfs``, resolved."""
    destination = rootfs / (relative or str(source).lstrip("/"))
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.resolve(), destination)


def _copy_with_libraries(rootfs: Path, binary: Path, relative: str) -> None:
    _copy_into(rootfs, binary, relative)
    for library in shared_libraries(binary):
        # Stored under the name ldd printed (e.g. /lib64/ld-linux-x86-64.so.2), content resolved.
        _copy_into(rootfs, library)


def compile_static(asset: str, output: Path) -> bool:
    """Compile assets/``asset`` (C) into a static ``output``; False without a static-capable compiler."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        return False
    with tempfile.TemporaryDirectory(prefix="pa-cc-") as scratch:
        c_file = Path(scratch) / asset
        c_file.write_text(_assets().joinpath(asset).read_text())
        output.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([compiler, "-static", "-O2", "-o", str(output), str(c_file)],
                                capture_output=True, check=False)
    return result.returncode == 0


def _busybox_tree(rootfs: Path, busybox: Path, with_ps: bool) -> None:
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
                      "var", "run"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                            check=False).stdout.split()
    for applet in listed:
        link = rootfs / "bin" / applet
        if applet not in ("busybox", *(() if with_ps else ("ps",))) and not link.exists():
            link.symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)
    (rootfs / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")


def make_rootfs(rootfs: Path) -> None:
    """Fill ``rootfs`` with the node image's files."""
    busybox = find_busybox()
    runtime = find_runtime()
    _busybox_tree(rootfs, busybox, with_ps=False)  # `ps` is procps's, as in a kind node
    for directory in ("var/lib/containerd", "var/lib/kubelet", "var/log/pods", "etc/containerd"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    for name, relative in RUNTIME_BINARIES.items():
        _copy_with_libraries(rootfs, runtime[name], relative)
    _copy_with_libraries(rootfs, PROCPS_PS, "usr/bin/ps")
    (rootfs / "etc" / "containerd" / "config.toml").write_text(
        _assets().joinpath("containerd-config.toml").read_text())
    if not compile_static("node-init.c", rootfs / "init"):
        (rootfs / "init").write_text(_assets().joinpath("node-init").read_text())
        (rootfs / "init").chmod(0o755)
    (rootfs / "etc" / "hostname").write_text("sandbox-node\n")


def _tar(rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in sorted(rootfs.iterdir()):
            archive.add(entry, arcname=entry.name)
    return buffer.getvalue()


@contextmanager
def _build_lock(name: str = "pidmap-sandbox-image.lock") -> Iterator[None]:
    # Two `sandbox up` at once (parallel test suites) must not build the same image twice.
    lock_path = Path(tempfile.gettempdir()) / name
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _image_exists(docker_client: Any, name: str) -> bool:
    import docker.errors

    try:
        docker_client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_image(docker_client: Any, name: str = layout.NODE_IMAGE) -> str:
    """Build the node image ``name`` unless it exists; return its name. Idempotent, concurrency-safe."""
    import docker.errors

    if _image_exists(docker_client, name):
        return name
    with _build_lock():
        if _image_exists(docker_client, name):
            return name
        with tempfile.TemporaryDirectory(prefix="pa-rootfs-") as scratch:
            rootfs = Path(scratch)
            make_rootfs(rootfs)
            repository, _, tag = name.partition(":")
            changes = [f"LABEL {key}={value}" for key, value in IMAGE_LABELS.items()]
            changes += ['CMD ["/init"]', "WORKDIR /", f"ENV PATH={DEFAULT_PATH}", "ENV container=docker"]
            try:
                docker_client.api.import_image_from_data(_tar(rootfs), repository=repository,
                                                  tag=tag or "latest", changes=changes)
            except docker.errors.APIError as err:
                raise DockerError(f"cannot import the node image {name}: {err.explanation or err}",
                                  hint="check `docker info` and free disk space") from err
    if not _image_exists(docker_client, name):
        raise DockerError(f"the node image {name} was imported but cannot be found", hint="docker images")
    return name


# ---- pod images ------------------------------------------------------------------------------


def _pod_image_trees(scratch: Path) -> list[tuple[PodImage, Path]]:
    """Root filesystems of the pod images this machine can make (kubia needs Node.js, pause and
    the shell-less image a static C compiler)."""
    busybox = find_busybox()
    trees: list[tuple[PodImage, Path]] = []
    root = scratch / "busybox"
    _busybox_tree(root, busybox, with_ps=True)
    trees.append((BUSYBOX, root))
    node = shutil.which("node")
    if node:
        root = scratch / "kubia"
        _busybox_tree(root, busybox, with_ps=False)  # a shell, as node:7's Debian has; ps from procps
        _copy_with_libraries(root, Path(node), "usr/bin/node")
        _copy_with_libraries(root, PROCPS_PS, "usr/bin/ps")
        (root / "app.js").write_text(_assets().joinpath("app.js").read_text())
        trees.append((KUBIA, root))
    root = scratch / "pause"
    if compile_static("pause.c", root / "pause"):
        trees.append((PAUSE, root))
    root = scratch / "distroless"
    if compile_static("app-static.c", root / "app"):
        (root / "etc").mkdir()
        (root / "etc" / "passwd").write_text(PASSWD)
        trees.append((DISTROLESS, root))
    return trees


def _inputs_key() -> str:
    """Hash of everything the pod images are made of (files by path, size and mtime)."""
    digest = hashlib.sha256(POD_IMAGES_FORMAT.encode())
    tools = [shutil.which("node"), shutil.which("gcc")]
    sources = [find_busybox(), PROCPS_PS, *(Path(p) for p in tools if p)]
    for source in sources:
        path = Path(source).resolve()
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    for asset in ("app.js", "pause.c", "app-static.c"):
        digest.update(_assets().joinpath(asset).read_bytes())
    return digest.hexdigest()[:16]


def _layer(tree: Path, out: Path) -> str:
    """Write ``tree`` as a layer tar to ``out``; return its sha256 (the image's diff_id)."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as archive:
        for entry in sorted(tree.iterdir()):
            archive.add(entry, arcname=entry.name)
    digest = hashlib.sha256()
    with out.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_archive(target: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="pa-podimg-", dir=target.parent) as scratch_name:
        scratch = Path(scratch_name)
        trees = _pod_image_trees(scratch / "trees")
        manifest: list[dict[str, Any]] = []
        with tarfile.open(target.with_suffix(".part"), "w") as archive:
            for index, (image, tree) in enumerate(trees):
                layer_file = scratch / f"layer{index}.tar"
                diff_id = _layer(tree, layer_file)
                archive.add(layer_file, arcname=f"{diff_id}/layer.tar")
                config = {
                    "architecture": "amd64", "os": "linux",
                    "config": {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": image.working_dir,
                               **({"Entrypoint": list(image.entrypoint)} if image.entrypoint else {}),
                               **({"Cmd": list(image.cmd)} if image.cmd else {})},
                    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
                    "history": [{"created_by": "pidmap sandbox (built locally, offline)"}],
                }
                data = json.dumps(config, sort_keys=True).encode()
                config_name = f"{hashlib.sha256(data).hexdigest()}.json"
                info = tarfile.TarInfo(config_name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                manifest.append({"Config": config_name, "RepoTags": [image.reference],
                                 "Layers": [f"{diff_id}/layer.tar"]})
            data = json.dumps(manifest).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        target.with_suffix(".part").rename(target)


def ensure_pod_images(cache: Path | None = None) -> Path:
    """The pod images' archive (``docker save`` format), built once per set of inputs."""
    cache = cache or POD_IMAGES_CACHE
    target = cache / f"pod-images-{_inputs_key()}.tar"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _build_lock("pidmap-sandbox-pod-images.lock"):
        if not target.is_file():
            for old in cache.glob("pod-images-*.tar"):  # an older build's archive
                old.unlink(missing_ok=True)
            _write_archive(target)
    return target


def archived_images(archive: Path) -> list[str]:
    """The image names an archive made by ensure_pod_images holds."""
    with tarfile.open(archive) as handle:
        member = handle.extractfile("manifest.json")
        assert member is not None
        return [tag for entry in json.load(member) for tag in entry["RepoTags"]]
