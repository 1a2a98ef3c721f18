"""Throw-away PKI for a local control plane: one CA, loopback serving certs, client certs.

Everything here is for a lab on 127.0.0.1 and is regenerated on every start; nothing is meant to
be trusted beyond the life of that control plane. Keys are ECDSA P-256: generating them takes
microseconds (RSA-2048 takes tens of milliseconds each) and kube-apiserver, etcd, kubectl, the
Python ``kubernetes`` client and kopf all accept them, including for service-account signing
(ES256).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "LOOPBACK_HOSTS", "CertAuthority", "ControlPlanePKI", "KeyPair", "WebhookPKI", "new_ca",
    "new_service_account_keypair", "write_control_plane_pki", "write_pem", "write_webhook_pki",
]

#: Names a loopback serving certificate is valid for.
LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

# Backdate certificates a little so a client whose clock is slightly behind still accepts them.
_CLOCK_SKEW = _dt.timedelta(hours=1)
_DEFAULT_VALIDITY = _dt.timedelta(days=365)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8 rather than "EC PRIVATE KEY" (SEC1): every consumer we use reads PKCS#8.
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate (mode 0644) and key (mode 0600) to the given paths."""
        write_pem(cert_path, self.cert_pem, private=False)
        write_pem(key_path, self.key_pem, private=True)


@dataclass(frozen=True)
class CertAuthority:
    """A self-signed CA able to issue serving and client certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM form (what clients put in their trust bundle)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The CA private key in PEM (PKCS#8) form."""
        return _key_pem(self.key)

    def _issue(
        self,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        hosts: Sequence[str] = (),
        usages: Sequence[x509.ObjectIdentifier],
        validity: _dt.timedelta,
    ) -> KeyPair:
        key = _new_key()
        now = _dt.datetime.now(_dt.UTC)
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_encipherment=False, content_commitment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if hosts:
            builder = builder.add_extension(_san(hosts), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def issue_serving_cert(
        self,
        hosts: Sequence[str] = LOOPBACK_HOSTS,
        *,
        common_name: str | None = None,
        validity: _dt.timedelta = _DEFAULT_VALIDITY,
    ) -> KeyPair:
        """Issue a TLS server certificate valid for ``hosts`` (IP addresses and/or DNS names)."""
        if not hosts:
            raise ValueError("a serving certificate needs at least one host")
        return self._issue(
            common_name or hosts[0], hosts=hosts, usages=[ExtendedKeyUsageOID.SERVER_AUTH],
            validity=validity,
        )

    def issue_client_cert(
        self,
        common_name: str,
        organizations: Sequence[str] = (),
        *,
        validity: _dt.timedelta = _DEFAULT_VALIDITY,
    ) -> KeyPair:
        """Issue a TLS client certificate.

        kube-apiserver maps the CN to the user name and each O to a group, so
        ``issue_client_cert("admin", ["system:masters"])`` yields a cluster superuser.
        """
        return self._issue(
            common_name, organizations=organizations, usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
            validity=validity,
        )


def new_ca(
    common_name: str = "soc2infra-lab-ca", *, validity: _dt.timedelta = _DEFAULT_VALIDITY
) -> CertAuthority:
    """Create a fresh self-signed certificate authority."""
    key = _new_key()
    now = _dt.datetime.now(_dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertAuthority(cert, key)


def new_service_account_keypair() -> tuple[bytes, bytes]:
    """Return ``(private_pem, public_pem)`` for kube-apiserver's service-account token signing."""
    key = _new_key()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _key_pem(key), public


def write_pem(path: Path, data: bytes, *, private: bool) -> None:
    """Write PEM bytes to ``path``; private material is created with mode 0600 from the start.

    Opening with the final mode (rather than chmod after writing) means the key is never readable
    by other users, not even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # O_CREAT's mode does not apply when the file already existed


@dataclass(frozen=True)
class ControlPlanePKI:
    """Paths of the certificates and keys a local control plane needs."""

    dir: Path
    ca_file: Path
    ca_key_file: Path
    serving_cert_file: Path
    serving_key_file: Path
    admin_cert_file: Path
    admin_key_file: Path
    sa_key_file: Path
    sa_pub_file: Path


def write_control_plane_pki(
    directory: Path, *, hosts: Sequence[str] = LOOPBACK_HOSTS, admin_user: str = "soc2infra-admin"
) -> ControlPlanePKI:
    """Generate a CA, an apiserver serving cert, an admin client cert and a service-account keypair.

    The admin certificate carries ``O=system:masters`` so it bypasses RBAC. Files are written under
    ``directory`` (created if needed) and their paths returned.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # Extra serving names that kube-apiserver (and in-cluster clients) expect for itself.
    serving_hosts = list(dict.fromkeys([*hosts, "kubernetes", "kubernetes.default",
                                        "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]))
    ca = new_ca()
    pki = ControlPlanePKI(
        dir=directory,
        ca_file=directory / "ca.crt",
        ca_key_file=directory / "ca.key",
        serving_cert_file=directory / "apiserver.crt",
        serving_key_file=directory / "apiserver.key",
        admin_cert_file=directory / "admin.crt",
        admin_key_file=directory / "admin.key",
        sa_key_file=directory / "sa.key",
        sa_pub_file=directory / "sa.pub",
    )
    write_pem(pki.ca_file, ca.cert_pem, private=False)
    write_pem(pki.ca_key_file, ca.key_pem, private=True)
    ca.issue_serving_cert(serving_hosts, common_name="kube-apiserver").write(
        pki.serving_cert_file, pki.serving_key_file
    )
    ca.issue_client_cert(admin_user, ["system:masters"]).write(pki.admin_cert_file, pki.admin_key_file)
    sa_private, sa_public = new_service_account_keypair()
    write_pem(pki.sa_key_file, sa_private, private=True)
    write_pem(pki.sa_pub_file, sa_public, private=False)
    return pki


@dataclass(frozen=True)
class WebhookPKI:
    """Files for a TLS admission-webhook server and the CA the apiserver must trust for it.

    Maps one-to-one onto ``kopf.WebhookServer(certfile=..., pkeyfile=..., cafile=...)``.
    """

    certfile: Path
    pkeyfile: Path
    cafile: Path

    def to_dict(self) -> dict[str, str]:
        """JSON-friendly form (used in the lab state file)."""
        return {"certfile": str(self.certfile), "pkeyfile": str(self.pkeyfile), "cafile": str(self.cafile)}


def write_webhook_pki(directory: Path, hosts: Sequence[str] = LOOPBACK_HOSTS) -> WebhookPKI:
    """Write a dedicated CA plus a serving cert/key for an admission webhook on ``hosts``.

    The webhook gets its own CA (not the control plane's) so the file handed to kopf as ``cafile``
    vouches for nothing but the webhook. Use with::

        kopf.WebhookServer(addr="127.0.0.1", port=port, host="127.0.0.1",
                           certfile=str(p.certfile), pkeyfile=str(p.pkeyfile), cafile=str(p.cafile))
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca("soc2infra-webhook-ca")
    pki = WebhookPKI(
        certfile=directory / "webhook.crt", pkeyfile=directory / "webhook.key", cafile=directory / "ca.crt"
    )
    write_pem(pki.cafile, ca.cert_pem, private=False)
    ca.issue_serving_cert(hosts, common_name="soc2infra-webhook").write(pki.certfile, pki.pkeyfile)
    return pki
