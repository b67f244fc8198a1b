"""A real Podman service speaking the Docker API, for tests: started in a temp dir, always removed.

vfs storage (no overlay mounts needed), the socket, podman's state and its build scratch space all
live under one directory; `stop()` ends the service, unmounts anything podman left mounted there and
deletes the directory. Base images are built locally from Debian's static busybox: no registry pull.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests

from tfs_traffic.prometheus.local import free_port

BUSYBOX = Path("/bin/busybox")
BASE_TAG = "localhost/tfs-test-base:1"


@dataclass
class PodmanService:
    workdir: Path
    insecure_registries: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "podman.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 30.0) -> PodmanService:
        for name in ("root", "runroot", "libpod", "vartmp"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        cmd = [
            "podman",
            "--storage-driver",
            "vfs",
            "--root",
            str(self.workdir / "root"),
            "--runroot",
            str(self.workdir / "runroot"),
            "--tmpdir",
            str(self.workdir / "libpod"),
            "--events-backend",
            "none",
            "system",
            "service",
            "--time=0",
            self.docker_host,
        ]
        env = {**os.environ, "TMPDIR": str(self.workdir / "vartmp")}
        if self.insecure_registries:  # plain-HTTP registries on 127.0.0.1, for push tests
            conf = self.workdir / "registries.conf"
            conf.write_text(
                "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in self.insecure_registries)
            )
            env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
        log = (self.workdir / "service.log").open("wb")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"podman service exited: {self.log_tail()}")
            if self.socket.exists():
                with contextlib.suppress(Exception):
                    if self.client().ping():
                        return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"podman service did not answer within {timeout} s: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "service.log").read_text()[-2000:]
        return ""

    def client(self) -> Any:
        return docker.APIClient(base_url=self.docker_host, version="auto", timeout=120)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None
        # Podman can leave mounts (shm, build containers) under its root: unmount before deleting.
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout.split()
        for target in sorted((m for m in mounts if m.startswith(str(self.workdir))), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def podman_service(workdir: Path, insecure_registries: tuple[str, ...] = ()) -> Iterator[PodmanService]:
    service = PodmanService(workdir, insecure_registries)
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def local_registry(workdir: Path, timeout: float = 20.0) -> Iterator[str]:
    """Debian's docker-registry (CNCF distribution) on a free 127.0.0.1 port; yields host:port."""
    address = f"127.0.0.1:{free_port()}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\nhttp:\n  addr: {address}\n"
    )
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(workdir / 'registry.log').read_text()[-1000:]}")
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def build_base_image(client: Any, context_dir: Path, tag: str = BASE_TAG) -> str:
    """FROM scratch + busybox as /bin/busybox and /bin/sh: enough for the entrypoint script."""
    context_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, context_dir / "busybox")
    (context_dir / "Dockerfile").write_text("FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\n")
    image_id = None
    for chunk in client.build(path=str(context_dir), tag=tag, decode=True, rm=True):
        if "error" in chunk:
            raise RuntimeError(chunk["error"])
        image_id = chunk.get("aux", {}).get("ID", image_id)
    assert image_id
    return image_id


@dataclass
class ImageFile:
    path: str
    mode: int
    uid: int
    gid: int
    kind: bytes
    data: bytes


def _apply_layer(layer: tarfile.TarFile, files: dict[str, ImageFile]) -> None:
    for entry in layer.getmembers():
        name = entry.name[2:] if entry.name.startswith("./") else entry.name
        path = "/" + os.path.normpath(name).lstrip("/") if name not in ("", ".") else "/"
        path = "/" if path == "/." else path
        base = os.path.basename(path)
        if base.startswith(".wh."):
            hidden = os.path.join(os.path.dirname(path), base[4:])
            for gone in [p for p in files if p == hidden or p.startswith(hidden + "/")]:
                del files[gone]
            continue
        data = layer.extractfile(entry).read() if entry.isfile() else b""  # type: ignore[union-attr]
        files[path] = ImageFile(path, entry.mode, entry.uid, entry.gid, entry.type, data)


def image_filesystem(client: Any, image: str) -> dict[str, ImageFile]:
    """The image's files, layers applied in order (whiteouts honoured), read from `docker save`."""
    with tarfile.open(fileobj=io.BytesIO(b"".join(client.get_image(image)))) as saved:
        manifest = json.loads(saved.extractfile("manifest.json").read())  # type: ignore[union-attr]
        files: dict[str, ImageFile] = {}
        for layer_name in manifest[0]["Layers"]:
            member = saved.getmember(layer_name)
            while member.issym():  # podman's docker-archive links dir/layer.tar to the blob
                target = os.path.normpath(os.path.join(os.path.dirname(member.name), member.linkname))
                member = saved.getmember(target)
            with tarfile.open(fileobj=saved.extractfile(member)) as layer:
                _apply_layer(layer, files)
    return files


def extract_rootfs(files: dict[str, ImageFile], target: Path) -> None:
    """Write the image's regular files and directories (with modes) under `target`, for chroot.

    A runtime makes the root of a container's filesystem 0755 unless a layer says otherwise.
    """
    os.chmod(target, 0o755)
    for path in sorted(files):
        item = files[path]
        dest = target / path.lstrip("/")
        if item.kind == tarfile.DIRTYPE:
            dest.mkdir(parents=True, exist_ok=True)
        elif item.kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(item.data)
        else:
            continue
        os.chmod(dest, item.mode)
        os.chown(dest, item.uid, item.gid)
