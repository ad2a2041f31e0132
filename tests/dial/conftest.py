"""Fixtures shared by the integration tests."""

from __future__ import annotations

import io

import boto3
import numpy as np
import pytest
import soundfile as sf


@pytest.fixture
def audio_url(s3_bucket: str):
    """A 1 s tone at ``audio/tone.wav`` and a function giving presigned URLs of keys."""
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 8000, subtype="ULAW", format="WAV")
    client = boto3.client("s3")
    client.put_object(Bucket=s3_bucket, Key="audio/tone.wav", Body=buffer.getvalue())

    def url(key: str) -> str:
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": s3_bucket, "Key": key}, ExpiresIn=3600
        )

    return url
