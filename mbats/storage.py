"""Object storage for datasets and reports: S3/MinIO through the ``minio`` client when
``MBATS_S3_ENDPOINT`` is set, local folders under ``MBATS_HOME`` otherwise.

Locations are returned as URIs (``s3://bucket/key`` or ``file:///…``) so they can be logged to
MLflow and read back with :func:`read_bytes`.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlparse

from mbats.config import Settings, get_settings
from mbats.errors import ConfigError, ServiceUnavailableError

KINDS = ("artifacts", "datasets", "reports")


def bucket_names(settings: Settings | None = None) -> dict[str, str]:
    s = settings or get_settings()
    return {"artifacts": s.s3_bucket_artifacts, "datasets": s.s3_bucket_datasets, "reports": s.s3_bucket_reports}


def s3_client(settings: Settings | None = None):
    """A minio client for the configured endpoint (None when no endpoint is set)."""
    import urllib3
    from minio import Minio

    s = settings or get_settings()
    if not s.s3_endpoint:
        return None
    url = urlparse(s.s3_endpoint if "://" in s.s3_endpoint else f"http://{s.s3_endpoint}")
    if not s.s3_access_key or not s.s3_secret_key:
        raise ConfigError("MBATS_S3_ENDPOINT is set but MBATS_S3_ACCESS_KEY / MBATS_S3_SECRET_KEY are not")
    # Few, short retries: a down endpoint should fail in seconds, not minutes.
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60),
                               retries=urllib3.Retry(total=2, backoff_factor=0.2,
                                                     status_forcelist=[500, 502, 503, 504]))
    return Minio(url.netloc, access_key=s.s3_access_key, secret_key=s.s3_secret_key.get_secret_value(),
                 secure=url.scheme == "https", region=s.s3_region, http_client=http)


def _unavailable(exc: Exception) -> ServiceUnavailableError:
    from minio.error import S3Error

    endpoint = get_settings().s3_endpoint
    if isinstance(exc, S3Error):
        why = f"{exc.code}: {exc.message}"
    else:
        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ServiceUnavailableError(
        f"S3 endpoint {endpoint} refused the request ({why}); check MBATS_S3_ENDPOINT and the S3 credentials")


def ensure_buckets(settings: Settings | None = None) -> list[str]:
    """Create the artifacts, datasets and reports buckets if missing; return the ones created."""
    client = s3_client(settings)
    if client is None:
        return []
    created = []
    try:
        for name in bucket_names(settings).values():
            if not client.bucket_exists(name):
                client.make_bucket(name)
                created.append(name)
    except Exception as exc:
        raise _unavailable(exc) from None
    return created


def _local_root(kind: str) -> Path:
    s = get_settings()
    return s.datasets_dir if kind == "datasets" else s.reports_dir if kind == "reports" else s.artifacts_dir


def put_bytes(kind: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Store ``data`` under ``key`` in the ``kind`` bucket (or folder); return its URI."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    client = s3_client()
    if client is None:
        path = _local_root(kind) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path.resolve().as_uri()
    bucket = bucket_names()[kind]
    try:
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
    except Exception as exc:
        raise _unavailable(exc) from None
    return f"s3://{bucket}/{key}"


def put_file(kind: str, key: str, path: Path) -> str:
    return put_bytes(kind, key, Path(path).read_bytes())


def read_bytes(uri: str) -> bytes:
    url = urlparse(uri)
    if url.scheme == "file":
        return Path(url.path).read_bytes()
    if url.scheme != "s3":
        raise ValueError(f"unsupported storage URI {uri}")
    client = s3_client()
    if client is None:
        raise ConfigError(f"{uri} is in S3 but MBATS_S3_ENDPOINT is not set")
    try:
        response = client.get_object(url.netloc, url.path.lstrip("/"))
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()
    except Exception as exc:
        raise _unavailable(exc) from None


def put_dataset(key: str, frame) -> str:
    """Write a DataFrame as Parquet to the datasets bucket (or folder); return its URI."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return put_bytes("datasets", key, buffer.getvalue(), "application/vnd.apache.parquet")


def read_dataset(uri: str):
    import pandas as pd

    return pd.read_parquet(io.BytesIO(read_bytes(uri)))


def put_report_folder(prefix: str, folder: Path) -> list[str]:
    """Copy every file of a report folder to the reports bucket under ``prefix``; return the URIs."""
    return [put_file("reports", f"{prefix}/{p.relative_to(folder).as_posix()}", p)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()]
