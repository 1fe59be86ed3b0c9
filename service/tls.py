"""A self-signed development certificate for nginx, made once with ``openssl``.

It lives in ``<LAB_HOME>/tls`` (git-ignored, never committed) and is valid for
localhost and 127.0.0.1, so clients can verify against it with ``--cacert``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lab.errors import LabError

CERT_NAME = "dev-cert.pem"
KEY_NAME = "dev-key.pem"


def ensure_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) in ``folder``, generated on first use."""
    cert, key = folder / CERT_NAME, folder / KEY_NAME
    if cert.exists() and key.exists():
        return cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LabError(
            "openssl is needed to make the development TLS certificate", code="no_openssl"
        )
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "365",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise LabError(f"openssl failed: {proc.stderr.strip()}", code="tls_failed")
    key.chmod(0o600)
    return cert, key
