"""TLS for the Node: contexts that trust only the configured CA, and the peer's cert names.

The adapter hands the certificate's DNS names to the sans-IO side as plain data (`Link.
cert_names`); the identity check itself (the names must include the Origin-Host) is pure,
in peer/admission.py.
"""

from __future__ import annotations

import ssl
from typing import Any

from chargegw.peer.config import TlsConfig


def _need_ca(tls: TlsConfig) -> None:
    if tls.verify_peer and not tls.cafile:
        raise ValueError(
            "TLS verify_peer needs a CA file (cafile): the system trust store is never used"
        )


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """Trusts only tls.cafile: a public CA must not vouch for a Diameter peer."""
    _need_ca(tls)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.certfile:
        ctx.load_cert_chain(tls.certfile, tls.keyfile)
    if tls.cafile:
        ctx.load_verify_locations(tls.cafile)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.verify_peer else ssl.CERT_NONE
    if tls.ciphers:
        ctx.set_ciphers(tls.ciphers)
    return ctx


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """Trusts only tls.cafile (no system store, which create_default_context would load)."""
    _need_ca(tls)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cafile:
        ctx.load_verify_locations(tls.cafile)
    if tls.certfile:
        ctx.load_cert_chain(tls.certfile, tls.keyfile)
    ctx.check_hostname = tls.verify_peer and tls.check_hostname
    if not tls.verify_peer:
        ctx.verify_mode = ssl.CERT_NONE
    if tls.ciphers:
        ctx.set_ciphers(tls.ciphers)
    return ctx


def peer_cert_names(transport: Any) -> list[str] | None:
    """The DNS SANs of the verified peer certificate (None: no certificate)."""
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
