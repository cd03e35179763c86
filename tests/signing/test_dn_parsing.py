"""The DN parser reads what people type: spaces after commas, lower-case attribute names."""

from __future__ import annotations

import pytest
from cryptography.x509.oid import NameOID

from signing.crypto import normalise_dn, parse_dn


@pytest.mark.parametrize(
    "typed",
    [
        "CN=Fleet CA, O=Acme, C=DE",
        "cn=Fleet CA,o=Acme,c=DE",
        "Cn = Fleet CA ,  O = Acme , C = DE ",
        "CN=Fleet CA,O=Acme,C=DE",
    ],
)
def test_typed_forms_give_the_same_name(typed: str) -> None:
    assert parse_dn(typed).rfc4514_string() == "CN=Fleet CA,O=Acme,C=DE"


def test_escaped_commas_and_spaces_still_work() -> None:
    name = parse_dn(r"CN=Fleet\, Inc. CA, O=Acme\, Ltd, ou=Ops, C=DE")
    assert name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Fleet, Inc. CA"
    assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme, Ltd"
    assert name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Ops"
    assert normalise_dn("CN=trailing\\ , C=DE") == "CN=trailing\\ ,C=DE"
    assert parse_dn("CN=trailing\\ , C=DE").rfc4514_string() == "CN=trailing\\ ,C=DE"


def test_what_stays_refused() -> None:
    with pytest.raises(ValueError, match="'DC' is not a supported name attribute"):
        parse_dn("CN=X, dc=example")
    with pytest.raises(ValueError, match="two-letter upper-case country code"):
        parse_dn("CN=X, C=de")
    with pytest.raises(ValueError, match="RFC 4514"):
        parse_dn("CN=X, , O=Y")
