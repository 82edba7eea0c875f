"""Keeping secrets out of output, logs and the database.

A webhook URL carries its token in the path (Slack, Teams, PagerDuty…), a database URL its
password: both are secrets. What is stored or printed instead is a reference that lets a person
recognise which secret was used (scheme, host and a short hash) without revealing it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

SECRET_KEYS = re.compile(r"webhook|token|password|passwd|secret|api_?key|credential", re.IGNORECASE)


def fingerprint(secret: str) -> str:
    """A short, stable name for a secret: the first 12 hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def url_ref(url: str | None) -> str | None:
    """``https://hooks.example.com/…#sha256:1a2b3c4d5e6f``: where it points, never its path or password."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return fingerprint(url)
    return f"{parts.scheme or '?'}://{host}{port}/…#{fingerprint(url)}"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every given secret (and, for URLs, their path and query) replaced by a reference."""
    for secret in filter(None, secrets):
        ref = url_ref(secret) if "://" in secret else fingerprint(secret)
        text = text.replace(secret, ref)
        try:
            parts = urlsplit(secret)
        except ValueError:
            continue
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(tail) > 1:  # request libraries quote just the path: "Max retries exceeded with url: /hook/T0k3n"
            text = text.replace(tail, "/…")
        if parts.password:
            text = text.replace(parts.password, "***")
    return text


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON-like value whose secret-looking keys (webhook, token, password…) are references."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if SECRET_KEYS.search(str(key)) and isinstance(item, str) and "sha256:" not in item:
                out[key] = url_ref(item) if "://" in item else fingerprint(item)
            else:
                out[key] = mask_secrets(item)
        return out
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value
