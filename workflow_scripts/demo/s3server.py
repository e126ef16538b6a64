"""A real S3 server on loopback (moto in server mode) for the demo and tests.

The server runs in its own process so it never competes with the client for
the interpreter lock. Objects are uploaded with the ``public-read`` ACL, the
only way moto serves them to unsigned requests, as the public gallery does.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

# moto accepts any credentials; these exist only for the uploading client.
_UPLOAD_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    """A moto server process on 127.0.0.1; use as a context manager."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> S3Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"S3 server exited with code {self.process.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"S3 server on port {self.port} did not start in {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def admin_client(self):
        """A signed client that may create buckets and upload."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            config=Config(max_pool_connections=32),
            **_UPLOAD_CREDENTIALS,
        )


def upload_tree(client, bucket: str, root: Path, prefix: str = "") -> int:
    """Upload every file under ``root`` as ``prefix/relative/path``, public-read.

    Creates the bucket if needed; returns the number of objects uploaded.
    """
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket, ACL="public-read")
    paths = sorted(p for p in Path(root).rglob("*") if p.is_file())

    def put(path: Path) -> None:
        key = "/".join(filter(None, [prefix.strip("/"), path.relative_to(root).as_posix()]))
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ACL="public-read")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, paths))
    return len(paths)
