"""`make env`: write `.env` from `.env.example` with fresh random secrets.

Every empty ``NAME=`` line whose name says it is a secret (PASSWORD, SECRET, KEY, TOKEN) gets a new
random value; ``AIRFLOW_FERNET_KEY`` a valid Fernet key; user-supplied credentials
(``MBATS_OANDA_TOKEN``) stay empty. An existing `.env` is never overwritten unless ``--force``.

    python -m mbats.stack.envfile [--example .env.example] [--out .env] [--force]
"""

from __future__ import annotations

import argparse
import base64
import re
import secrets
import sys
from pathlib import Path

SECRET = re.compile(r"^([A-Z][A-Z0-9_]*(PASSWORD|SECRET|KEY|TOKEN)[A-Z0-9_]*)=\s*$")
USER_SUPPLIED = {"MBATS_OANDA_TOKEN"}


def secret_value(name: str) -> str:
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    if name.endswith("ACCESS_KEY"):
        return "mbats" + secrets.token_hex(6)  # S3 access keys are user names: short, alphanumeric
    return secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")  # safe inside URLs and shells


def render(example: str) -> str:
    out = []
    for line in example.splitlines():
        m = SECRET.match(line)
        if m and m.group(1) not in USER_SUPPLIED:
            line = f"{m.group(1)}={secret_value(m.group(1))}"
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", type=Path, default=Path(".env.example"))
    ap.add_argument("--out", type=Path, default=Path(".env"))
    ap.add_argument("--force", action="store_true", help="replace an existing file (its secrets are lost)")
    args = ap.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists; keeping it (its passwords are in the databases already). "
              "Use --force (make env FORCE=1) to write a new one.", file=sys.stderr)
        return 1
    text = render(args.example.read_text())
    args.out.touch(mode=0o600)
    args.out.chmod(0o600)
    args.out.write_text(text)
    filled = sum(1 for a, b in zip(args.example.read_text().splitlines(), text.splitlines()) if a != b)
    print(f"wrote {args.out} with {filled} fresh secrets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
