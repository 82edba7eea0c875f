"""Create the S3 bucket of an ``s3://bucket/prefix`` URI if it is missing (minio client, idempotent)."""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlparse

from minio import Minio
from minio.error import S3Error


def main(uri: str) -> None:
    bucket = urlparse(uri).netloc
    endpoint = urlparse(os.environ["MLFLOW_S3_ENDPOINT_URL"])
    client = Minio(endpoint.netloc, access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                   secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"), secure=endpoint.scheme == "https",
                   region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    for attempt in range(30):  # in compose, MinIO may still be starting
        try:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
                print(f"created bucket {bucket}")
            return
        except S3Error:
            raise
        except Exception as exc:  # connection refused while the S3 server starts
            if attempt == 29:
                sys.exit(f"S3 endpoint {endpoint.netloc} not reachable: {exc}")
            time.sleep(2)


if __name__ == "__main__":
    main(sys.argv[1])
