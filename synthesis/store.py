"""The worker's S3 access: a thin boto3 client wrapper that classifies failures.

S3 is reached with boto3's standard environment (``AWS_ACCESS_KEY_ID``,
``AWS_ENDPOINT_URL_S3``, ...), never through Airflow: the same code runs in a pod.
"""

from __future__ import annotations

from typing import Any


class TransientStorageError(RuntimeError):
    """S3 could not be reached or answered with a server error."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


class BatchStore:
    """Reads and writes objects of one bucket; 5xx and connection errors are transient."""

    def __init__(self, bucket: str, client: Any | None = None) -> None:
        import boto3

        self.bucket = bucket
        self._client = client or boto3.client("s3")

    def _call(self, name: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, name)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500:
                raise TransientStorageError(f"{name}: {exc}") from exc
            raise
        except BotoCoreError as exc:  # connection refused, timeouts, DNS
            raise TransientStorageError(f"{name}: {exc}") from exc

    def read(self, key: str) -> bytes:
        return self._call("get_object", Key=key)["Body"].read()

    def read_if_exists(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        """Body and user metadata of ``key``, or None when it does not exist."""
        from botocore.exceptions import ClientError

        try:
            response = self._call("get_object", Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return response["Body"].read(), response.get("Metadata", {})

    def head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self._call("head_object", Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def write(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self._call("put_object", Key=key, Body=data, ContentType=content_type, Metadata=metadata)
