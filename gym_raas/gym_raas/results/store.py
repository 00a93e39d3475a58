"""Where result bundles are kept: a folder (local default) or S3/MinIO, with a spool for outages.

All stores speak in keys built by `gym_raas.results.layout`. `S3ResultStore` uses the official
``minio`` SDK (``pip install 'gym-raas[s3]'``), imported only when an S3 store is created.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class StoreUnavailableError(RuntimeError):
    """The store could not be reached (after retries); the operation can be tried again later."""


class ResultNotFoundError(KeyError):
    """No object under that key."""


class ResultStore(Protocol):
    """Put, get and list result objects by key."""

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None:
        """Remove the object (nothing happens if there is none)."""
        ...

    def download_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL a client can fetch the object from (presigned for S3)."""
        ...


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid result key {key!r}")
    return key


class FilesystemResultStore:
    """Objects as files under a root folder (the local platform's default)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        """File that holds the object under `key`."""
        return self.root / _check_key(key)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename: readers never see half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle, Path(path).open("rb") as source:
            shutil.copyfileobj(source, handle)
        os.replace(handle.name, target)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        target = self.path_of(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, target)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except FileNotFoundError:
            raise ResultNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix.rstrip("/") if prefix else self.root
        if not base.exists():
            return []
        return sorted(str(path.relative_to(self.root)) for path in base.rglob("*") if path.is_file())

    def delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    def download_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.path_of(key).resolve().as_uri()


class S3ResultStore:
    """Objects in an S3 bucket (MinIO in the cluster) through the official minio SDK.

    The bucket is created if missing. Transient failures are retried with exponential backoff
    (``retries`` attempts, starting at ``backoff_s``); a store that stays unreachable raises
    `StoreUnavailableError`. Files above 5 MiB are uploaded in parts.
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = True,
        region: str | None = None,
        retries: int = 3,
        backoff_s: float = 0.2,
        timeout_s: float = 10.0,
    ) -> None:
        try:
            import urllib3
            from minio import Minio
        except ImportError as error:
            raise ImportError("the S3 result store needs minio: pip install 'gym-raas[s3]'") from error
        self.bucket = bucket
        retry = urllib3.Retry(
            total=retries,
            connect=retries,
            read=retries,
            backoff_factor=backoff_s,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=None,
        )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s), retries=retry, maxsize=8
        )
        self._client = Minio(
            endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http
        )
        self._bucket_ready = False

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        if not self._call(self._client.bucket_exists, self.bucket):
            self._call(self._client.make_bucket, self.bucket)
            log.info("created bucket %s", self.bucket)
        self._bucket_ready = True

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        import urllib3.exceptions

        try:
            return function(*args, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise StoreUnavailableError(f"S3 store at {self._client._base_url.host} unreachable: {error}") from error

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        self._ensure_bucket()
        self._call(self._client.fput_object, self.bucket, _check_key(key), str(path), content_type=content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        import io

        self._ensure_bucket()
        self._call(
            self._client.put_object,
            self.bucket,
            _check_key(key),
            io.BytesIO(data),
            len(data),
            content_type=content_type,
        )

    def get_bytes(self, key: str) -> bytes:
        from minio.error import S3Error

        self._ensure_bucket()
        try:
            response = self._call(self._client.get_object, self.bucket, _check_key(key))
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                raise ResultNotFoundError(key) from None
            raise
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        self._ensure_bucket()
        try:
            self._call(self._client.stat_object, self.bucket, _check_key(key))
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise
        return True

    def list_keys(self, prefix: str) -> list[str]:
        self._ensure_bucket()
        objects = self._call(lambda: list(self._client.list_objects(self.bucket, prefix=prefix, recursive=True)))
        return sorted(item.object_name for item in objects)

    def delete(self, key: str) -> None:
        self._ensure_bucket()
        self._call(self._client.remove_object, self.bucket, _check_key(key))  # (S3: no error if absent)

    def download_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        if not timedelta(seconds=1) <= expires <= timedelta(days=7):
            raise ValueError("presigned URLs expire after 1 second to 7 days")
        self._ensure_bucket()  # (presigning asks the bucket's region)
        return str(self._call(self._client.presigned_get_object, self.bucket, _check_key(key), expires=expires))

    def upload_url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A presigned URL that lets a credential-less client (a fetch pod) PUT the object once."""
        if not timedelta(seconds=1) <= expires <= timedelta(days=7):
            raise ValueError("presigned URLs expire after 1 second to 7 days")
        self._ensure_bucket()
        return str(self._call(self._client.presigned_put_object, self.bucket, _check_key(key), expires=expires))
