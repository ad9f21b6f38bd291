"""The outbound guard: which URLs the server may be made to call (by the admin, and by a tenant)."""

from __future__ import annotations

import pytest

from inferbox.control.outbound import OutboundRefused, check_url

LOOPBACK = [
    "http://127.0.0.1/m",
    "http://127.1/m",
    "http://0x7f.1/m",
    "http://2130706433/m",
    "http://[::1]/m",
]
PRIVATE = ["http://10.1.2.3/m", "http://192.168.0.1/m", "http://172.16.5.4/m", "http://100.64.0.1/m"]
ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/m",
    "http://metadata.google.internal/",
    "http://0.0.0.0/m",
    "ftp://example.com/m",
    "file:///etc/passwd",
    "http://user:pw@127.0.0.1/m",
    "http:///nohost",
]


@pytest.mark.parametrize("url", ALWAYS_REFUSED)
def test_metadata_link_local_and_non_http_are_refused_to_everyone(url: str) -> None:
    with pytest.raises(OutboundRefused):
        check_url(url)
    with pytest.raises(OutboundRefused):
        check_url(url, public_only=True)


@pytest.mark.parametrize("url", LOOPBACK + PRIVATE)
def test_loopback_and_private_addresses_in_every_spelling_are_refused_to_tenants(url: str) -> None:
    assert check_url(url) == url  # the admin may name a machine of the private network
    with pytest.raises(OutboundRefused, match=r"loopback|private"):
        check_url(url, public_only=True)


def test_a_public_address_passes() -> None:
    assert check_url("https://93.184.215.14/model.joblib", public_only=True)
