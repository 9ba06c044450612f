"""The sandbox's node image, built locally: static busybox, the host's Node.js, the kubia app.

No registry is reachable, so the image is a ``docker import`` of a root filesystem assembled in a
temporary directory. Node.js is copied together with every shared library ``ldd`` names (and the
dynamic loader), so that ``luksa/kubia`` really runs ``node app.js`` inside the node.
"""

from __future__ import annotations

import fcntl
import io
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
from pidmap.sandbox import layout

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")
# Applets pod commands and the kubelet rely on; every other applet busybox lists is linked too.
REQUIRED_APPLETS = ("sh", "unshare", "nsenter", "mount", "hostname", "ip", "env", "sleep", "ps")
# Label value 1 on the image; the node containers carry the sandbox name instead.
IMAGE_LABELS = {layout.OWNER_LABEL: "1"}
NODE_LABEL = "io.pidmap.sandbox.node-js"
_LDD_PATH = re.compile(r"(/\S+)")


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


def _copy_into(rootfs: Path, source: Path) -> None:
    """Copy ``source`` to the same absolute path under ``rootfs`` (symlinks resolved)."""
    destination = rootfs / str(source).lstrip("/")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.resolve(), destination)


def _build_pause_and_init(rootfs: Path) -> None:
    """/pause and the node's /init: one static C program (reap children, exit 0 on SIGTERM).

    ``ps`` then shows ``/pause``, and orphans re-parented to a node's PID 1 are reaped at once (a
    shell's ``wait`` only collects them when it wakes up). Without a static-capable compiler both
    fall back to shell scripts.
    """
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler:
        with tempfile.TemporaryDirectory(prefix="pa-pause-") as scratch:
            c_file = Path(scratch) / "pause.c"
            c_file.write_text(_assets().joinpath("pause.c").read_text())
            result = subprocess.run([compiler, "-static", "-O2", "-o", str(rootfs / "pause"), str(c_file)],
                                    capture_output=True, check=False)
            if result.returncode == 0:
                shutil.copy2(rootfs / "pause", rootfs / "init")
                return
    for name, asset in (("pause", "pause.sh"), ("init", "node-init")):
        (rootfs / name).write_text(_assets().joinpath(asset).read_text())
        (rootfs / name).chmod(0o755)


def make_rootfs(rootfs: Path) -> bool:
    """Fill ``rootfs``; return whether Node.js was included."""
    busybox = find_busybox()
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
                      "var/lib/kubelet", "run"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    listed = subprocess.run([str(busybox), "--list"], capture_output=True, text=True,
                            check=False).stdout.split()
    for applet in {*listed, *REQUIRED_APPLETS}:
        link = rootfs / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    node = shutil.which("node")
    if node:
        shutil.copy2(Path(node).resolve(), rootfs / "usr" / "bin" / "node")
        for library in shared_libraries(Path(node)):
            # Stored under the name ldd printed (e.g. /lib64/ld-linux-x86-64.so.2), content resolved.
            _copy_into(rootfs, library)
    (rootfs / "app.js").write_text(_assets().joinpath("app.js").read_text())
    _build_pause_and_init(rootfs)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                           "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n")
    (rootfs / "etc" / "hostname").write_text("sandbox-node\n")
    return node is not None


def _tar(rootfs: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in sorted(rootfs.iterdir()):
            archive.add(entry, arcname=entry.name)
    return buffer.getvalue()


@contextmanager
def _build_lock() -> Iterator[None]:
    # Two `sandbox up` at once (parallel test suites) must not import the image twice.
    lock_path = Path(tempfile.gettempdir()) / "pidmap-sandbox-image.lock"
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
            with_node = make_rootfs(rootfs)
            repository, _, tag = name.partition(":")
            changes = [f"LABEL {key}={value}" for key, value in IMAGE_LABELS.items()]
            changes.append(f"LABEL {NODE_LABEL}={'1' if with_node else '0'}")
            changes += ['CMD ["/init"]', "WORKDIR /",
                        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            try:
                docker_client.api.import_image_from_data(_tar(rootfs), repository=repository,
                                                  tag=tag or "latest", changes=changes)
            except docker.errors.APIError as err:
                raise DockerError(f"cannot import the node image {name}: {err.explanation or err}",
                                  hint="check `docker info` and free disk space") from err
    if not _image_exists(docker_client, name):
        raise DockerError(f"the node image {name} was imported but cannot be found", hint="docker images")
    return name


def image_has_node(docker_client: Any, name: str = layout.NODE_IMAGE) -> bool:
    labels = docker_client.images.get(name).labels or {}
    return bool(labels.get(NODE_LABEL) == "1")

