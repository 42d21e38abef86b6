"""MLflow's webhook signature, checked exactly as ``mlflow.webhooks.delivery`` makes it.

MLflow 3 sends ``X-MLflow-Delivery-Id`` (a UUID), ``X-MLflow-Timestamp`` (Unix seconds) and, when the webhook
has a secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256>`` over ``"{delivery_id}.{timestamp}.{body}"``
with the body exactly as sent (``mlflow.webhooks.delivery._generate_hmac_signature``; Standard Webhooks).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
VERSION = "v1"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The header value MLflow sends for this delivery: ``v1,<base64>``."""
    content = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode("utf-8"), content, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def verify(secret: str, delivery_id: str, timestamp: str, body: bytes, header: str | None) -> bool:
    """True when one of the space-separated ``v1,<base64>`` signatures in ``header`` is this body's.
    Compared in constant time (``hmac.compare_digest``), every candidate compared."""
    if not header or not secret:
        return False
    expected = sign(secret, delivery_id, timestamp, body).encode()
    ok = False
    for candidate in header.split()[:8]:
        ok |= hmac.compare_digest(candidate.encode(), expected)
    return ok
