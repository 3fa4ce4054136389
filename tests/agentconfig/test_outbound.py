"""agentconfig.core.outbound: which URLs may be called, and a client that checks where it connects.

The resolver is faked (socket.getaddrinfo) only in this module, to give a public-looking
name the answers an attacker's DNS would; every connection goes to a real listener on
127.0.0.1 (tests/listener.py), which counts what reaches it.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import subprocess

import httpx2
import pytest

from agentconfig.core.outbound import (
    OutboundRefused,
    ResponseTooLarge,
    check_url,
    safe_client,
    why_not_public,
)
from tests.listener import Listener, http_reply
from versions.git_source import GitError, check_location

PURPOSE = "The evaluation endpoint"
REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _no_allow_lists(settings):
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = []
    settings.AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS = []


@pytest.fixture
def resolver(monkeypatch):
    """A fake DNS: names in `answers` resolve to the listed addresses; every lookup is kept.

    An answer may be a list of lists: one per lookup, in order (a rebinding DNS).
    Addresses written as such resolve as usual.
    """

    class Resolver:
        answers: dict[str, list] = {}
        lookups: list[str] = []

        def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
            name = host.decode() if isinstance(host, bytes) else str(host)
            self.lookups.append(name)
            if name not in self.answers:
                return REAL_GETADDRINFO(host, port, family, type, proto, flags)
            answer = self.answers[name]
            if answer and isinstance(answer[0], list):
                answer = answer.pop(0) if len(answer) > 1 else answer[0]
            return [
                (
                    socket.AF_INET6 if ":" in address else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (address, port, 0, 0) if ":" in address else (address, port),
                )
                for address in answer
            ]

    fake = Resolver()
    fake.answers, fake.lookups = {}, []
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def listener():
    with Listener() as server:
        yield server


def _client(max_response_bytes: int = 10_000) -> httpx2.Client:
    return safe_client(timeout=2.0, max_response_bytes=max_response_bytes, purpose=PURPOSE)


# --- check_url: the URL as written ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/v1", "127.0.0.1 is a loopback address"),
        ("https://127.8.9.10:6379/", "127.8.9.10 is a loopback address"),
        ("https://[::1]:8080/", "::1 is a loopback address"),
        ("https://10.1.2.3/", "10.1.2.3 is a private address"),
        ("https://172.16.0.1/", "172.16.0.1 is a private address"),
        ("https://192.168.1.20/", "192.168.1.20 is a private address"),
        ("https://[fc00::1]/", "fc00::1 is a private address"),
        ("https://[fd12:3456::1]/", "fd12:3456::1 is a private address"),
        ("https://169.254.169.254/latest/", "169.254.169.254 is a link-local address (cloud"),
        ("https://169.254.10.1/", "169.254.10.1 is a link-local address;"),
        ("https://[fe80::1]/", "fe80::1 is a link-local address"),
        ("https://[fd00:ec2::254]/", "is a link-local address (cloud metadata)"),
        ("https://224.0.0.251/", "224.0.0.251 is a multicast address"),
        ("https://[ff02::1]/", "ff02::1 is a multicast address"),
        ("https://0.0.0.0/", "0.0.0.0 is the unspecified address"),
        ("https://[::]/", ":: is the unspecified address"),
        ("https://240.0.0.1/", "240.0.0.1 is a reserved address"),
        ("https://100.64.0.1/", "100.64.0.1 is a special-purpose (non-global) address"),
        ("https://[fec0::1]/", "fec0::1 is a site-local address"),
        ("https://[::ffff:127.0.0.1]/", "loopback address (IPv4-mapped form of 127.0.0.1)"),
        ("https://[::ffff:10.0.0.1]/", "private address (IPv4-mapped form of 10.0.0.1)"),
        ("https://[::ffff:a9fe:a9fe]/", "(cloud metadata) (IPv4-mapped form of 169.254.169.254)"),
        ("https://[2002:7f00:1::]/", "loopback address (6to4 form of 127.0.0.1)"),
        ("https://[64:ff9b::a9fe:a9fe]/", "(NAT64 form of 169.254.169.254)"),
        ("https://2130706433/", "2130706433 (127.0.0.1) is a loopback address"),
        ("https://0177.0.0.1/", "0177.0.0.1 (127.0.0.1) is a loopback address"),
        ("https://0x7f.0.0.1/", "0x7f.0.0.1 (127.0.0.1) is a loopback address"),
        ("https://127.1/", "127.1 (127.0.0.1) is a loopback address"),
        ("https://0xa9fea9fe/", "0xa9fea9fe (169.254.169.254) is a link-local address (cloud"),
        ("https://localhost:8000/v1", "localhost names this machine"),
        ("https://redis.localhost/", "redis.localhost names this machine"),
    ],
)
def test_check_url__non_public_address__refused_saying_what_and_why(url, reason):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, purpose=PURPOSE)

    assert reason in refused.value.message
    assert "outbound calls go only to public addresses" in refused.value.message
    assert "AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS" in refused.value.message


def test_check_url__metadata_address__the_message_a_person_reads():
    with pytest.raises(OutboundRefused) as refused:
        check_url("https://169.254.169.254/latest/meta-data/", purpose=PURPOSE)

    assert refused.value.message.startswith(
        "The evaluation endpoint https://169.254.169.254/latest/meta-data/: 169.254.169.254 "
        "is a link-local address (cloud metadata); outbound calls go only to public addresses."
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://models.example.com/v1", "ftp:// is not accepted; outbound calls use https://"),
        ("file:///etc/passwd", "file:// is not accepted"),
        ("gopher://models.example.com:6379/_INFO", "gopher:// is not accepted"),
        ("models.example.com/v1", "a URL without a scheme is not accepted"),
        ("http://models.example.com/v1", "plain http is accepted only for the hosts listed"),
        ("http://127.0.0.1:6379/", "plain http is accepted only for the hosts listed"),
        ("https:///v1", "the URL has no host"),
        ("https://models.example.com:99999/", "not a valid URL"),
        ("https://models.example.com/v1 x", "contains spaces or control characters"),
        ("", "no URL given"),
    ],
)
def test_check_url__not_https_or_malformed__refused(url, reason):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, purpose=PURPOSE)

    assert reason in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2@models.example.com/v1",
        "https://hunter2@models.example.com/v1",
        "https://models.example.com@169.254.169.254/",
    ],
)
def test_check_url__credentials_in_the_url__refused_without_repeating_them(url):
    with pytest.raises(OutboundRefused) as refused:
        check_url(url, purpose=PURPOSE)

    assert "the URL contains credentials" in refused.value.message
    assert "hunter2" not in refused.value.message
    assert "models.example.com@" not in refused.value.message


def test_check_url__public_https__parsed_with_default_or_given_port():
    parsed = check_url("https://API.OpenAI.com/v1?x=1", purpose=PURPOSE)
    with_port = check_url("https://8.8.8.8:8443/v1", purpose=PURPOSE)

    assert (parsed.scheme, parsed.host, parsed.port, parsed.path, parsed.ip) == (
        "https",
        "api.openai.com",
        443,
        "/v1?x=1",
        None,
    )
    assert (with_port.port, with_port.ip) == (8443, ipaddress.ip_address("8.8.8.8"))


def test_check_url__http_host_listed__http_and_loopback_accepted_for_that_host_only(settings):
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = ["127.0.0.1:11434", "models.lan"]

    assert check_url("http://127.0.0.1:11434/v1", purpose=PURPOSE).port == 11434
    assert check_url("http://models.lan:8000/v1", purpose=PURPOSE).host == "models.lan"
    # the same host on another port (Redis) is not listed
    with pytest.raises(OutboundRefused, match="plain http is accepted only"):
        check_url("http://127.0.0.1:6379/", purpose=PURPOSE)
    with pytest.raises(OutboundRefused, match="loopback"):
        check_url("https://127.0.0.1:6379/", purpose=PURPOSE)
    # nor is the same address written another way
    with pytest.raises(OutboundRefused, match="plain http is accepted only"):
        check_url("http://2130706433:11434/", purpose=PURPOSE)


def test_check_url__private_host_listed__https_accepted_for_it(settings):
    settings.AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS = ["10.0.0.5", "[fd00::5]:8443"]

    assert check_url("https://10.0.0.5/v1", purpose=PURPOSE).ip == ipaddress.ip_address("10.0.0.5")
    assert check_url("https://[fd00::5]:8443/v1", purpose=PURPOSE).port == 8443
    with pytest.raises(OutboundRefused, match="plain http"):
        check_url("http://10.0.0.5/v1", purpose=PURPOSE)
    with pytest.raises(OutboundRefused, match="private"):
        check_url("https://[fd00::5]:9000/v1", purpose=PURPOSE)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"],
)
def test_why_not_public__public_address__none(address):
    assert why_not_public(ipaddress.ip_address(address)) is None


# --- safe_client: where it connects ----------------------------------------------------


def test_safe_client__public_name_resolving_to_loopback__refused_before_connecting(
    resolver, listener
):
    # Given a name that passes check_url, whose DNS answers 127.0.0.1 (the listener's host)
    resolver.answers["models.example.com"] = ["127.0.0.1"]
    url = f"https://models.example.com:{listener.port}/v1/chat/completions"
    check_url(url, purpose=PURPOSE)

    # When
    with _client() as client, pytest.raises(OutboundRefused) as refused:
        client.post(url, json={})

    # Then
    assert "models.example.com (127.0.0.1) is a loopback address" in refused.value.message
    assert listener.accepted == 0


def test_safe_client__any_resolved_address_not_public__refused(resolver, listener):
    resolver.answers["models.example.com"] = ["93.184.216.34", "169.254.169.254"]

    with _client() as client, pytest.raises(OutboundRefused, match=r"cloud metadata"):
        client.get(f"https://models.example.com:{listener.port}/")

    assert listener.accepted == 0


def test_safe_client__ipv4_mapped_answer__refused(resolver, listener):
    resolver.answers["models.example.com"] = ["::ffff:127.0.0.1"]

    with _client() as client, pytest.raises(OutboundRefused, match="IPv4-mapped form"):
        client.get(f"https://models.example.com:{listener.port}/")

    assert listener.accepted == 0


def test_safe_client__decimal_form__refused(listener):
    # The system resolver reads it as 127.0.0.1 (inet_aton); so does the check.
    with _client() as client, pytest.raises(OutboundRefused, match=r"\(127\.0\.0\.1\) is a loop"):
        client.get(f"https://2130706433:{listener.port}/")

    assert listener.accepted == 0


def test_safe_client__octal_form__refused(listener):
    # httpx2 already refuses to parse it; check_url (above) names it on save.
    with _client() as client, pytest.raises((OutboundRefused, httpx2.InvalidURL)):
        client.get(f"https://0177.0.0.1:{listener.port}/")

    assert listener.accepted == 0


def test_safe_client__dns_rebinding__the_checked_address_is_the_one_connected(
    resolver, listener, settings
):
    # Given a name allowed on this machine, whose DNS answers the listener's address first
    # and a black-holed address to every later lookup (a rebinding attack)
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = [f"model.test:{listener.port}"]
    resolver.answers["model.test"] = [["127.0.0.1"], ["10.255.255.1"]]

    # When
    with _client() as client:
        response = client.get(f"http://model.test:{listener.port}/v1/models")

    # Then the name was looked up once, and the connection went to that answer, with the
    # name in the Host header
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert resolver.lookups.count("model.test") == 1
    assert listener.accepted == 1
    head = listener.requests[0].split(b"\r\n\r\n")[0].lower()
    assert f"host: model.test:{listener.port}".encode() in head
    assert b"accept-encoding: identity" in head


def test_safe_client__name_listed_for_another_port__loopback_refused(resolver, listener, settings):
    # Given a model server allowed on port 11434 only, and the same name on another port
    settings.AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS = ["model.test:11434"]
    resolver.answers["model.test"] = ["127.0.0.1"]

    with _client() as client, pytest.raises(OutboundRefused, match="loopback"):
        client.get(f"https://model.test:{listener.port}/")

    assert listener.accepted == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_safe_client__https_to_a_checked_address__tls_names_the_host(resolver, settings, tmp_path):
    # Given a TLS server on 127.0.0.1 with a self-signed certificate for the name, which
    # the name resolves to (allowed here as a model server on this machine)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=models.internal.test"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Listener(ssl_context=context) as server:
        settings.AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS = ["models.internal.test"]
        resolver.answers["models.internal.test"] = ["127.0.0.1"]

        # When
        with _client() as client, pytest.raises(httpx2.ConnectError, match="CERTIFICATE"):
            client.get(f"https://models.internal.test:{server.port}/v1")

    # Then the connection reached the checked address, named the host in SNI, and the
    # certificate was verified (and refused: no CA signed it)
    assert server.accepted == 1
    assert server.sni_names == ["models.internal.test"]


def test_safe_client__redirect__not_followed(listener, settings):
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = [listener.host_port]
    listener.reply = http_reply(b"", "302 Found", Location="http://169.254.169.254/latest/")

    with _client() as client:
        response = client.get(f"http://{listener.host_port}/v1")

    assert response.status_code == 302
    assert listener.accepted == 1


@pytest.mark.parametrize("content_length", [True, False])
def test_safe_client__response_past_the_limit__reading_stops(listener, settings, content_length):
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = [listener.host_port]
    body = b"x" * 5000
    listener.reply = http_reply(body) if content_length else http_reply(body, Content_Length="")

    with _client(max_response_bytes=1000) as client, pytest.raises(ResponseTooLarge) as refused:
        client.get(f"http://{listener.host_port}/v1")

    assert "1,000" in refused.value.message


def test_safe_client__compressed_response__refused(listener, settings):
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = [listener.host_port]
    listener.reply = http_reply(b"\x1f\x8b" + b"\0" * 20, Content_Encoding="gzip")

    with _client() as client, pytest.raises(OutboundRefused, match="compressed"):
        client.get(f"http://{listener.host_port}/v1")


def test_safe_client__proxy_in_the_environment__not_used(listener, settings, monkeypatch):
    # Given a proxy variable pointing at a listener that must not be reached
    settings.AGENTCONFIG_OUTBOUND_HTTP_HOSTS = [listener.host_port]
    with Listener() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.host_port}")
        monkeypatch.setenv("ALL_PROXY", f"http://{proxy.host_port}")

        with _client() as client:
            client.get(f"http://{listener.host_port}/v1")

    assert (listener.accepted, proxy.accepted) == (1, 0)


def test_safe_client__url_the_rules_refuse__refused_before_resolving(resolver, listener):
    with _client() as client:
        with pytest.raises(OutboundRefused, match="plain http"):
            client.get(f"http://{listener.host_port}/")
        with pytest.raises(OutboundRefused, match="ftp:// is not accepted"):
            client.get("ftp://models.example.com/")

    assert listener.accepted == 0 and resolver.lookups == []


def test_safe_client__name_that_does_not_resolve__connect_error(resolver):
    resolver.answers["nowhere.example.com"] = []

    with _client() as client, pytest.raises(httpx2.ConnectError, match="cannot resolve"):
        client.get("https://nowhere.example.com/")


# --- the same host rules for git remotes ----------------------------------------------------


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://127.0.0.1/team/agents.git", "127.0.0.1 is a loopback address"),
        ("https://169.254.169.254/agents.git", "link-local address (cloud metadata)"),
        ("ssh://git@10.0.0.7/team/agents.git", "10.0.0.7 is a private address"),
        ("ssh://git@[::1]:2222/agents.git", "::1 is a loopback address"),
        ("git@192.168.0.9:team/agents.git", "192.168.0.9 is a private address"),
        ("git@localhost:agents.git", "localhost names this machine"),
        ("https://token:s3cret@github.com/team/agents.git", "the URL contains credentials"),
    ],
)
def test_git_location__non_public_host_or_credentials__refused(location, reason):
    with pytest.raises(GitError) as refused:
        check_location(location)

    assert reason in refused.value.message
    assert "s3cret" not in refused.value.message


def test_git_location__private_host_listed__accepted(settings):
    settings.AGENTCONFIG_OUTBOUND_ALLOW_PRIVATE_HOSTS = ["10.0.0.7"]

    assert check_location("ssh://git@10.0.0.7/team/agents.git").kind == "remote"
