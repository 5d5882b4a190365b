"""Certificates from a throwaway CA (trustme) written to files, as servers and clients take them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class CertFiles:
    ca: str  # the CA certificate clients must trust
    cert: str  # the server's certificate chain, for 127.0.0.1 and localhost
    key: str  # its private key


def issue(ca: trustme.CA, directory: Path) -> CertFiles:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = CertFiles(ca=str(directory / "ca.pem"), cert=str(directory / "server.pem"), key=str(directory / "key.pem"))
    ca.cert_pem.write_to_path(files.ca)
    leaf.private_key_pem.write_to_path(files.key)
    for i, pem in enumerate(leaf.cert_chain_pems):
        pem.write_to_path(files.cert, append=i > 0)
    return files


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context
