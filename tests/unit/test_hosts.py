"""Which site a Host belongs to: exact names, one-label wildcards, ports and case, as Caddy matches them."""

from __future__ import annotations

import pytest

from activator.core.hosts import HostTable, host_name

TABLE = HostTable(
    [
        ("blog.test", "blog"),
        ("www.blog.test", "blog"),
        ("*.wild.test", "wild"),
        ("api.wild.test", "api"),  # an exact name beats the wildcard that also covers it
        ("*.deep.wild.test", "deep"),
        ("Mixed.Test", "mixed"),
        ("127.0.0.1", "ip"),
        ("::1", "ipv6"),
    ]
)


@pytest.mark.parametrize(
    ("host", "site"),
    [
        # exact names, whatever the case or port
        ("blog.test", "blog"),
        ("www.blog.test", "blog"),
        ("BLOG.Test", "blog"),
        ("blog.test:8080", "blog"),
        ("blog.test:", "blog"),
        ("mixed.test", "mixed"),
        ("other.test", None),
        ("blog.test.evil", None),
        ("evilblog.test", None),
        ("", None),
        # a wildcard stands for exactly one label
        ("a.wild.test", "wild"),
        ("A.WILD.TEST:443", "wild"),
        ("x-1.wild.test", "wild"),
        ("wild.test", None),
        ("a.b.wild.test", None),
        (".wild.test", None),
        ("api.wild.test", "api"),
        ("z.deep.wild.test", "deep"),
        ("deep.wild.test", "wild"),  # one label before wild.test
        ("y.z.deep.wild.test", None),
        # addresses
        ("127.0.0.1", "ip"),
        ("127.0.0.1:80", "ip"),
        ("[::1]", "ipv6"),
        ("[::1]:8080", "ipv6"),
        ("::1", "ipv6"),
        ("[::2]:8080", None),
    ],
)
def test_which_site_a_host_belongs_to(host: str, site: str | None) -> None:
    assert TABLE.site(host) == site


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.COM", "example.com"),
        ("example.com:8080", "example.com"),
        (" example.com ", "example.com"),
        ("[::1]:8080", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("[::1", "[::1"),  # malformed: left as it is, and matches nothing
        ("example.com:http", "example.com:http"),
    ],
)
def test_the_name_of_a_host_header(host: str, name: str) -> None:
    assert host_name(host) == name


def test_an_empty_table_knows_no_host() -> None:
    assert HostTable([]).site("a.wild.test") is None
