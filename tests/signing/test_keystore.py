"""Key store: generate (service and `create_ca`), import PEM and PKCS#12, every refusal, the
admin (add by mode, read-only page, certificate download) and that the key never leaks."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from portal.models import AuditEvent
from signing.keystore import WrongCaPassword, get_key_store
from signing.models import CertificateAuthority
from signing.services import ca_generate, ca_import_pem, ca_import_pkcs12

from .conftest import cert_pem, key_pem, make_cert, p12, rsa_key

PASSWORD = "entry-password-1"
pytestmark = pytest.mark.django_db


def field_error(exc: pytest.ExceptionInfo[ValidationError], field: str) -> str:
    return " ".join(exc.value.message_dict[field])


def assert_key_protected(ca: CertificateAuthority, password: str) -> None:
    assert ca.private_key_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    get_key_store().check_password(ca, password)
    # the key signs, and what it signs verifies with the CA certificate's public key
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    now = datetime.now(UTC)
    leaf = ec.generate_private_key(ec.SECP256R1()).public_key()
    cert = get_key_store().sign(
        ca,
        password,
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "probe")]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1)),
    )
    cert.verify_directly_issued_by(ca_cert)


# --- generate -------------------------------------------------------------------------------


def test_generate_ec_ca_has_ca_extensions() -> None:
    ca = ca_generate(
        alias="root", dn="CN=Fleet CA,O=ACME,OU=Ops,L=Berlin,ST=BE,C=DE", password=PASSWORD
    )
    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert bc.value.ca
    assert bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign
    assert ku.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert (ca.key_type, ca.source) == ("ec-p256", "generated")
    assert (ca.not_after - ca.not_before).days in (729, 730)
    assert ca.subject == cert.subject.rfc4514_string()
    assert_key_protected(ca, PASSWORD)


def test_generated_ca_subject_keeps_the_rfc4514_order_given() -> None:
    ca = ca_generate(alias="ordered", dn="CN=Fleet CA,O=Acme,C=DE", password=PASSWORD)
    cert = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    assert cert.subject.rfc4514_string() == "CN=Fleet CA,O=Acme,C=DE"
    assert ca.subject == "CN=Fleet CA,O=Acme,C=DE"
    # ASN.1 order: the least specific RDN (C) is encoded first
    assert [a.rfc4514_attribute_name for a in cert.subject] == ["C", "O", "CN"]


@pytest.mark.parametrize(
    ("dn", "sentence"),
    [
        ("CN=X,DC=example", "'DC' is not a supported name attribute"),
        ("CN=X,CN=Y", "'CN' appears twice"),
        ("CN=X,C=de", "two-letter upper-case country code"),
        ("CN=X+O=Y", "one attribute per part"),
        ("CN=X,O=" + "o" * 65, "'O' is longer than 64 characters"),
        ("CN=X,,O=Y", "RFC 4514"),
    ],
)
def test_generate_refuses_a_dn_with_a_sentence(dn: str, sentence: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ca_generate(alias="bad-dn", dn=dn, password=PASSWORD)
    assert sentence in field_error(exc, "dn")


def test_create_ca_command_uses_ca_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CA_PASSWORD", PASSWORD)
    out = io.StringIO()
    call_command(
        "create_ca",
        "--alias",
        "cmd-ca",
        "--dn",
        "CN=Cmd CA,C=US",
        "--key-type",
        "rsa-2048",
        "--days",
        "100",
        stdout=out,
    )
    ca = CertificateAuthority.objects.get(alias="cmd-ca")
    assert ca.key_type == "rsa-2048"
    assert (ca.not_after - ca.not_before).days in (99, 100)
    assert ca.fingerprint_sha256 in out.getvalue()
    assert PASSWORD not in out.getvalue()
    assert "PRIVATE KEY" not in out.getvalue()
    assert_key_protected(ca, PASSWORD)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_ca", "--alias", "cmd-ca", "--dn", "CN=Other,C=US")
    call_command(
        "create_ca",
        "--alias",
        "cmd-ca",
        "--dn",
        "CN=Other,C=US",
        "--overwrite",
        stdout=io.StringIO(),
    )
    assert CertificateAuthority.objects.get(alias="cmd-ca").subject == "CN=Other,C=US"


def test_create_ca_without_password_fails_with_a_sentence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CA_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="CA_PASSWORD"):
        call_command("create_ca", "--alias", "x", "--dn", "CN=X")
    monkeypatch.setenv("CA_PASSWORD", PASSWORD)
    with pytest.raises(CommandError, match="not a supported name attribute"):
        call_command("create_ca", "--alias", "x", "--dn", "CN=X,Q=1")
    assert not CertificateAuthority.objects.exists()


# --- import ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_password", ["", "source-pass-9"])
def test_import_pem_reencrypts_with_entry_password(key_password: str) -> None:
    cert, key = make_cert()
    ca = ca_import_pem(
        alias="imported",
        certificate_pem=cert_pem(cert),
        private_key_pem=key_pem(key, key_password),
        key_password=key_password,
        password=PASSWORD,
    )
    assert (ca.source, ca.key_type) == ("imported", "ec-p256")
    assert_key_protected(ca, PASSWORD)
    if key_password:
        with pytest.raises(WrongCaPassword):
            get_key_store().check_password(ca, key_password)


def test_import_pkcs12_rsa() -> None:
    cert, key = make_cert(key=rsa_key())
    ca = ca_import_pkcs12(
        alias="p12",
        pkcs12_data=p12(cert, key, "p12-pass"),
        pkcs12_password="p12-pass",
        password=PASSWORD,
    )
    assert (ca.source, ca.key_type) == ("imported", "rsa-2048")
    assert_key_protected(ca, PASSWORD)


def pem_import_refusal(
    field: str, certificate_pem: str, private_key_pem: str, **options: str
) -> str:
    """The sentence ``ca_import_pem`` refuses the PEM pair with, on the form field ``field``."""
    with pytest.raises(ValidationError) as exc:
        ca_import_pem(
            alias="x",
            certificate_pem=certificate_pem,
            private_key_pem=private_key_pem,
            **{"password": PASSWORD, **options},  # type: ignore[arg-type]
        )
    return field_error(exc, field)


def test_refuses_key_that_does_not_match() -> None:
    cert, _ = make_cert()
    _, other = make_cert()
    sentence = pem_import_refusal("private_key_pem", cert_pem(cert), key_pem(other))
    assert "does not match the certificate" in sentence
    # cryptography will not even write a mismatched PKCS#12; one without the key is refused.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    cert_only = pkcs12.serialize_key_and_certificates(
        b"ca", None, cert, None, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(ValidationError) as exc:
        ca_import_pkcs12(alias="x", pkcs12_data=cert_only, pkcs12_password="pw", password=PASSWORD)
    assert "both the CA certificate and its private key" in field_error(exc, "pkcs12_file")
    assert not CertificateAuthority.objects.exists()


@pytest.mark.parametrize(
    ("made_with", "sentence"),
    [
        ({"ca": False}, "not a CA certificate"),
        ({"key_cert_sign": False}, "keyCertSign"),
        ({"days": 10, "start_days_ago": 20}, "expired on"),
    ],
    ids=["not-a-ca", "no-keyCertSign", "expired"],
)
def test_refuses_a_certificate_that_cannot_be_a_ca(
    made_with: dict[str, Any], sentence: str
) -> None:
    cert, key = make_cert(**made_with)
    assert sentence in pem_import_refusal("certificate_pem", cert_pem(cert), key_pem(key))


def test_pkcs12_of_a_certificate_that_is_not_a_ca_is_refused() -> None:
    cert, key = make_cert(ca=False)
    with pytest.raises(ValidationError) as exc:
        ca_import_pkcs12(
            alias="x", pkcs12_data=p12(cert, key, "pw"), pkcs12_password="pw", password=PASSWORD
        )
    assert "not a CA certificate" in field_error(exc, "pkcs12_file")


def test_refuses_wrong_or_missing_passwords() -> None:
    cert, key = make_cert()
    encrypted = key_pem(key, "right-pass-1")
    sentence = pem_import_refusal(
        "key_password", cert_pem(cert), encrypted, key_password="wrong-pass-1"
    )
    assert sentence == "The private key password is wrong."
    assert "give its password" in pem_import_refusal("key_password", cert_pem(cert), encrypted)
    with pytest.raises(ValidationError) as exc:
        ca_import_pkcs12(
            alias="x",
            pkcs12_data=p12(cert, key, "right-pass-1"),
            pkcs12_password="wrong",
            password=PASSWORD,
        )
    assert "PKCS#12 password is wrong" in field_error(exc, "pkcs12_password")
    sentence = pem_import_refusal("password", cert_pem(cert), key_pem(key), password="short")
    assert "at least 8 characters" in sentence
    sentence = pem_import_refusal("certificate_pem", "not a pem", key_pem(key))
    assert "not a PEM X.509 certificate" in sentence
    assert not CertificateAuthority.objects.exists()


def test_existing_alias_is_refused_unless_overwrite() -> None:
    first = ca_generate(alias="same", dn="CN=First", password=PASSWORD)
    cert, key = make_cert()
    with pytest.raises(ValidationError) as exc:
        ca_import_pem(
            alias="same",
            certificate_pem=cert_pem(cert),
            private_key_pem=key_pem(key),
            password=PASSWORD,
        )
    assert "already exists" in field_error(exc, "alias")
    replaced = ca_import_pem(
        alias="same",
        certificate_pem=cert_pem(cert),
        private_key_pem=key_pem(key),
        password=PASSWORD,
        overwrite=True,
    )
    assert replaced.pk == first.pk
    assert replaced.source == "imported"
    assert replaced.fingerprint_sha256 != first.fingerprint_sha256
    assert CertificateAuthority.objects.count() == 1


# --- admin ----------------------------------------------------------------------------------


def test_admin_add_generate_and_read_only_page(admin_client) -> None:  # noqa: ANN001
    url = reverse("admin:signing_certificateauthority_add")
    response = admin_client.post(
        url,
        {
            "mode": "generate",
            "alias": "admin-ca",
            "password": PASSWORD,
            "dn": "CN=Admin CA,O=ACME,C=DE",
            "key_type": "ec-p384",
            "days": "365",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    ca = CertificateAuthority.objects.get(alias="admin-ca")
    assert ca.key_type == "ec-p384"
    assert_key_protected(ca, PASSWORD)

    page = admin_client.get(reverse("admin:signing_certificateauthority_change", args=[ca.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert ca.fingerprint_sha256 in html
    assert "PRIVATE KEY" not in html
    assert "(self-signed)" in html
    assert 'name="_save"' not in html  # read-only page: no save button
    assert "Delete" not in html

    listing = admin_client.get(reverse("admin:signing_certificateauthority_changelist")).content
    assert b"admin-ca" in listing
    assert b"expires within 180 days" in listing.lower()
    assert b"active certificates" in listing.lower()

    download = admin_client.get(
        reverse("admin:signing_certificateauthority_download", args=[ca.pk])
    )
    assert download.status_code == 200
    assert download.content.decode() == ca.certificate_pem
    assert b"PRIVATE KEY" not in download.content
    assert 'filename="admin-ca.pem"' in download["Content-Disposition"]


def test_admin_import_errors_are_form_errors_and_key_never_echoed(
    admin_client,
    caplog: pytest.LogCaptureFixture,  # noqa: ANN001
) -> None:
    caplog.set_level(logging.DEBUG)
    cert, _ = make_cert()
    _, other = make_cert()
    other_pem = key_pem(other)
    url = reverse("admin:signing_certificateauthority_add")
    response = admin_client.post(
        url,
        {
            "mode": "pem",
            "alias": "bad",
            "password": PASSWORD,
            "certificate_pem": cert_pem(cert),
            "private_key_pem": other_pem,
        },
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "does not match the certificate" in html
    assert "PRIVATE KEY" not in html
    assert PASSWORD not in html
    assert not CertificateAuthority.objects.exists()

    cert, key = make_cert()
    data = p12(cert, key, "p12-pass-1")
    response = admin_client.post(
        url,
        {
            "mode": "pkcs12",
            "alias": "from-p12",
            "password": PASSWORD,
            "pkcs12_file": io.BytesIO(data),
            "pkcs12_password": "p12-pass-1",
        },
    )
    assert response.status_code == 302
    ca = CertificateAuthority.objects.get(alias="from-p12")
    assert_key_protected(ca, PASSWORD)

    response = admin_client.post(
        url,
        {
            "mode": "pem",
            "alias": "from-p12",
            "password": PASSWORD,
            "certificate_pem": cert_pem(cert),
            "private_key_pem": key_pem(key),
        },
    )
    assert "already exists" in response.content.decode()

    everything = caplog.text + " ".join(str(e.detail) for e in AuditEvent.objects.all())
    assert "PRIVATE KEY" not in everything
    assert PASSWORD not in everything
    assert other_pem.splitlines()[1] not in everything


def test_import_ca_command(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    cert, key = make_cert()
    (tmp_path / "ca.pem").write_text(cert_pem(cert))
    (tmp_path / "ca.key").write_text(key_pem(key, "source-pass-1"))
    (tmp_path / "ca.p12").write_bytes(p12(cert, key, "source-pass-1"))
    pem_pair = ("--certificate", str(tmp_path / "ca.pem"), "--key", str(tmp_path / "ca.key"))
    monkeypatch.setenv("CA_PASSWORD", PASSWORD)
    monkeypatch.setenv("CA_IMPORT_PASSWORD", "wrong-pass-1")
    with pytest.raises(CommandError, match="The private key password is wrong."):
        call_command("import_ca", "--alias", "imp", *pem_pair)
    with pytest.raises(CommandError, match="either --certificate and --key, or --pkcs12"):
        call_command("import_ca", "--alias", "imp")
    monkeypatch.setenv("CA_IMPORT_PASSWORD", "source-pass-1")
    out = io.StringIO()
    call_command("import_ca", "--alias", "imp", *pem_pair, stdout=out)
    assert "Imported CA 'imp'" in out.getvalue()
    assert_key_protected(CertificateAuthority.objects.get(alias="imp"), PASSWORD)
    call_command(
        "import_ca", "--alias", "imp2", "--pkcs12", str(tmp_path / "ca.p12"), stdout=io.StringIO()
    )
    assert CertificateAuthority.objects.get(alias="imp2").fingerprint_sha256 == (
        CertificateAuthority.objects.get(alias="imp").fingerprint_sha256
    )
