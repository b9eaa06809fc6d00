"""TLS over TCP (RFC 6733 13): certificates from a CA generated here, checked both ways."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chargegw.codec.constants import CMD_CCR
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig, TlsConfig
from chargegw.peer.testing import make_ccr, result_code

REALM = "tls.example"
SERVER = "server.tls.example"
CLIENT = "client.tls.example"

pytestmark = pytest.mark.timeout(60)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(tmp: Path, label: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{label} test CA"))
        .issuer_name(_name(f"{label} test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"{label}-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_cert(
    tmp: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    name: str,
    label: str = "good",
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = tmp / f"{label}-{name}.pem"
    key_path = tmp / f"{label}-{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_path = make_ca(tmp, "good")
    s_cert, s_key = make_cert(tmp, ca_key, ca_cert, SERVER)
    c_cert, c_key = make_cert(tmp, ca_key, ca_cert, CLIENT)
    bad_key, bad_cert, bad_ca = make_ca(tmp, "rogue")
    r_cert, r_key = make_cert(tmp, bad_key, bad_cert, CLIENT, "rogue")
    return {
        "ca": ca_path,
        "server_cert": s_cert,
        "server_key": s_key,
        "client_cert": c_cert,
        "client_key": c_key,
        "rogue_ca": bad_ca,
        "rogue_cert": r_cert,
        "rogue_key": r_key,
    }


def cca(req: object) -> object:
    return req.answer(  # type: ignore[attr-defined]
        2001,
        origin_host=SERVER,
        origin_realm=REALM,
        auth_application_id=4,
        cc_request_type=req.cc_request_type,  # type: ignore[attr-defined]
        cc_request_number=req.cc_request_number,  # type: ignore[attr-defined]
    )


async def tls_server(pki: dict[str, Path]) -> Node:
    tls = TlsConfig(
        certfile=str(pki["server_cert"]), keyfile=str(pki["server_key"]), cafile=str(pki["ca"])
    )
    node = Node(
        NodeConfig(
            origin_host=SERVER,
            origin_realm=REALM,
            auth_apps=[4],
            listen=[ListenConfig(port=0, transport="tls", tls=tls)],
        )
    )
    node.add_handler(4, lambda m, p: cca(m), CMD_CCR)  # type: ignore[arg-type,return-value]
    await node.start()
    return node


def client_node(port: int, tls: TlsConfig) -> Node:
    return Node(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm=REALM,
            auth_apps=[4],
            connect_timeout=3.0,
            reconnect_min=5.0,
            peers=[PeerConfig(SERVER, port=port, transport="tls", tls=tls, realm=REALM)],
        )
    )


def test_tls_request_answer_with_mutual_authentication(pki: dict[str, Path]) -> None:
    async def main() -> None:
        server = await tls_server(pki)
        port = server.listen_addresses[0][2]
        assert server.listen_addresses[0][0] == "tls"
        client = client_node(
            port,
            TlsConfig(
                certfile=str(pki["client_cert"]),
                keyfile=str(pki["client_key"]),
                cafile=str(pki["ca"]),
            ),
        )
        await client.start()
        try:
            info = await client.wait_open(SERVER, timeout=10)
            assert info.transport == "tls"
            ssl_obj = info.conn.transport.get_extra_info("ssl_object")  # type: ignore[union-attr]
            assert ssl_obj is not None and ssl_obj.version() in ("TLSv1.2", "TLSv1.3")
            peer_cert = server.peers[CLIENT].conn.transport.get_extra_info("peercert")  # type: ignore[union-attr]
            assert ("commonName", CLIENT) in [item for rdn in peer_cert["subject"] for item in rdn]
            answers = await asyncio.gather(
                *(
                    client.request(make_ccr(CLIENT, REALM, REALM, end_to_end=0, number=i))
                    for i in range(50)
                )
            )
            assert [a.cc_request_number for a in answers] == list(range(50))
            assert all(result_code(a) == 2001 for a in answers)
        finally:
            await client.stop(timeout=2)
            await server.stop(timeout=2)

    asyncio.run(asyncio.wait_for(main(), 45))


@pytest.mark.parametrize("case", ["rogue-client-cert", "no-client-cert", "wrong-server-name"])
def test_tls_refuses_unverified_peers(pki: dict[str, Path], case: str) -> None:
    async def main() -> None:
        server = await tls_server(pki)
        port = server.listen_addresses[0][2]
        if case == "rogue-client-cert":
            tls = TlsConfig(
                certfile=str(pki["rogue_cert"]),
                keyfile=str(pki["rogue_key"]),
                cafile=str(pki["ca"]),
            )
        elif case == "no-client-cert":
            tls = TlsConfig(cafile=str(pki["ca"]))
        else:
            tls = TlsConfig(
                certfile=str(pki["client_cert"]),
                keyfile=str(pki["client_key"]),
                cafile=str(pki["ca"]),
                server_hostname="someone-else.tls.example",
            )
        client = client_node(port, tls)
        await client.start()
        try:
            with pytest.raises(asyncio.TimeoutError):
                await client.wait_open(SERVER, timeout=1.5)
            assert CLIENT not in server.peers or not server.peers[CLIENT].is_open
        finally:
            await client.stop(timeout=1)
            await server.stop(timeout=1)

    asyncio.run(asyncio.wait_for(main(), 45))
