"""The image proxy cannot be turned against admins or the network behind it.

- Token theft: only headers on the safe list are forwarded, never Cookie, never a
  hop-by-hop header, never a credential of this server in any header.
- Reaching inside: by default only public addresses, judged after DNS on the
  address really connected to, in every spelling, on every redirect; the
  allowlist names hosts, networks and ports; every refusal reads the same.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
import typing as t
from collections.abc import Iterator

import httpcore
import pytest
from conftest import ClientWith
from conftest import assert_error
from conftest import free_port
from flask.testing import FlaskClient
from local_issuer import LocalIssuer
from PIL import Image
from pytest_httpserver import HTTPServer
from werkzeug import Response

from iotsupport.auth import ACCESS_COOKIE
from iotsupport.auth import REFRESH_COOKIE
from iotsupport.errors import HostNotAllowed
from iotsupport.images.destinations import DestinationPolicy
from iotsupport.images.destinations import Entry
from iotsupport.images.destinations import EntryError
from iotsupport.images.destinations import IpAddress
from iotsupport.images.destinations import is_public
from iotsupport.images.forwarding import FORWARDABLE_HEADERS
from iotsupport.images.transport import VettingBackend

LVGL = "/api/images/lvgl"
PNG = Image.new("RGB", (2, 2), (9, 8, 7))


def png() -> bytes:
    import io

    buffer = io.BytesIO()
    PNG.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def upstream(httpserver_ipv4: HTTPServer) -> Iterator[HTTPServer]:
    httpserver_ipv4.expect_request("/a.png").respond_with_data(png(), content_type="image/png")
    yield httpserver_ipv4
    httpserver_ipv4.clear()


Build = ClientWith


@pytest.fixture
def build(client_with: ClientWith) -> Build:
    return client_with


def lvgl(client: FlaskClient, url: str, **query: str) -> t.Any:
    return client.get(LVGL, query_string={"url": url, **query})


def forwarding(client: FlaskClient, upstream: HTTPServer, name: str, value: str) -> t.Any:
    """Ask the proxy to forward the request's header `name`, sent with `value`."""
    return client.get(
        LVGL,
        query_string={"url": upstream.url_for("/a.png"), "headers": name},
        headers={name: value} if name.lower() not in {"host", "content-length"} else {},
    )


# --- which headers go upstream ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Cookie",
        "cookie",
        "COOKIE",
        "Cookie2",
        "Set-Cookie",
        ACCESS_COOKIE,
        "Connection",
        "Keep-Alive",
        "Host",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "X-Forwarded-For",
        "Forwarded",
        "X-Api-Key",
        "Origin",
        "Referer",
    ],
)
def test_only_safe_listed_headers_are_forwarded(
    build: Build, upstream: HTTPServer, name: str
) -> None:
    client = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    client.set_cookie(ACCESS_COOKIE, "the-admins-access-token")
    response = forwarding(client, upstream, name, "value")
    body = assert_error(response, 400, "header_not_forwardable")
    assert body["details"] == {"header": name, "forwardable": list(FORWARDABLE_HEADERS)}
    assert upstream.log == []


def test_the_browser_login_never_reaches_the_upstream(build: Build, upstream: HTTPServer) -> None:
    """The attack of the issue: a page sends a logged-in admin's browser to the proxy."""
    client = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    client.set_cookie(ACCESS_COOKIE, "access-token-value")
    client.set_cookie(REFRESH_COOKIE, "refresh-token-value")
    assert_error(lvgl(client, upstream.url_for("/a.png"), headers="Cookie"), 400)
    # Without naming any header, nothing of the browser's goes along either.
    assert lvgl(client, upstream.url_for("/a.png")).status_code == 200
    ((request, _),) = upstream.log
    assert "Cookie" not in request.headers
    assert "access-token-value" not in str(request.headers)


def test_a_cross_site_browser_request_forwards_nothing(build: Build, upstream: HTTPServer) -> None:
    client = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    basic = "Basic " + base64.b64encode(b"admin:proxy-password").decode()
    for site in ("cross-site", "same-site"):
        response = client.get(
            LVGL,
            query_string={"url": upstream.url_for("/a.png"), "headers": "Authorization"},
            headers={"Authorization": basic, "Sec-Fetch-Site": site},
        )
        body = assert_error(response, 400, "header_not_forwardable")
        assert body["details"] == {"sec_fetch_site": site}
    assert upstream.log == []
    same = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/a.png"), "headers": "Authorization"},
        headers={"Authorization": "Bearer ha", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "Bearer iotd_" + "x" * 43,
        "Basic " + base64.b64encode(b"aa:bb:cc:dd:ee:ff:iotd_" + b"y" * 43).decode(),
        "Token the-admins-access-token",
        "Bearer the-admins-access-token",
    ],
    ids=["device-bearer", "device-basic", "our-cookie-in-other-scheme", "our-cookie-as-bearer"],
)
def test_credentials_of_this_server_are_never_forwarded(
    build: Build, upstream: HTTPServer, value: str
) -> None:
    client = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    client.set_cookie(ACCESS_COOKIE, "the-admins-access-token")
    response = forwarding(client, upstream, "Authorization", value)
    if value.startswith(("Bearer iotd_", "Basic ")):
        # A device credential is the device's login here: an unknown one is refused first.
        assert_error(response, 401, "device_unauthorized")
    else:
        body = assert_error(response, 400, "header_not_forwardable")
        assert body["details"] == {"header": "Authorization"}
    assert upstream.log == []


DEVICE_BASIC = b"aabbccddeeff:iotd_" + b"y" * 43  # 61 bytes: base64 ends in "=="


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "value",
    [
        "Basic " + _b64(DEVICE_BASIC).rstrip("="),
        "basic " + _b64(DEVICE_BASIC).rstrip("="),
        "BASIC " + _b64(DEVICE_BASIC),
        "Basic   " + _b64(DEVICE_BASIC).rstrip("=") + "  ",
        "Basic\t" + _b64(DEVICE_BASIC).rstrip("="),
        "Basic " + base64.urlsafe_b64encode(DEVICE_BASIC).decode().rstrip("="),
        "Basic " + _b64(b"x:iotd_" + b"z" * 43).rstrip("="),
        "Basic " + _b64(b"xy:iotd_" + b"z" * 43),
        "Basic " + _b64(DEVICE_BASIC)[:20] + " " + _b64(DEVICE_BASIC)[20:],
        "Bearer  iotd_" + "x" * 43,
        "Token " + _b64(b"iotd_" + b"x" * 43),
    ],
    ids=[
        "unpadded",
        "lowercase-unpadded",
        "uppercase",
        "extra-spaces",
        "tab",
        "url-safe-alphabet",
        "short-user",
        "two-char-user",
        "split-in-two",
        "bearer-two-spaces",
        "base64-in-another-scheme",
    ],
)
@pytest.mark.parametrize("header", ["Authorization", "X-Upstream-Authorization"])
def test_a_device_token_is_never_forwarded_in_any_spelling(
    build: Build, upstream: HTTPServer, value: str, header: str
) -> None:
    client = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    response = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/a.png"), "headers": "Authorization"},
        headers={header: value},
    )
    assert response.status_code in (400, 401), response.get_json()
    assert response.get_json()["code"] in ("header_not_forwardable", "device_unauthorized")
    assert upstream.log == []


def test_a_camera_password_still_goes_in_every_basic_spelling(
    build: Build, upstream: HTTPServer
) -> None:
    client = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    for value in ("Basic " + _b64(b"admin:camera-pass").rstrip("="), "basic YWRtaW46cHc="):
        response = client.get(
            LVGL,
            query_string={"url": upstream.url_for("/a.png"), "headers": "Authorization"},
            headers={"X-Upstream-Authorization": value},
        )
        assert response.status_code == 200
        assert upstream.log[-1][0].headers["Authorization"] == value


def test_an_admin_token_of_our_issuer_is_never_forwarded(
    build: Build, upstream: HTTPServer, issuer: LocalIssuer
) -> None:
    client = build(
        image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}", **issuer.login_settings()
    )
    ours = issuer.token()
    response = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/a.png"), "headers": "Authorization"},
        headers={"Authorization": f"Bearer {ours}"},
    )
    assert_error(response, 400, "header_not_forwardable")
    # A Home Assistant token is a JWT too, from another issuer: that one goes.
    home_assistant = issuer.token(iss="https://ha.local:8123")
    response = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/a.png"), "headers": "Authorization"},
        headers={"Authorization": f"Bearer {home_assistant}"},
    )
    assert response.status_code == 200
    ((request, _),) = upstream.log
    assert request.headers["Authorization"] == f"Bearer {home_assistant}"


# --- the public-only default ------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "0177.1",
    "127.255.255.254",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[64:ff9b::7f00:1]",
    "[2002:7f00:1::]",
    "[::ffff:0:7f00:1]",  # IPv4-translated (SIIT)
    "[::ffff:0:127.0.0.1]",
]
INSIDE = [
    "0.0.0.0",
    "0",
    "[::]",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "[fe80::1]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[ff02::1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:0:a00:1]",
    "[::ffff:0:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:c0a8:101::1]",
    "no-such-host.invalid",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + INSIDE)
def test_inside_addresses_are_refused_by_default(
    build: Build, upstream: HTTPServer, host: str
) -> None:
    client = build()
    response = lvgl(client, f"http://{host}:{upstream.port}/a.png")
    body = assert_error(response, 403, "host_not_allowed")
    shown = host.strip("[]").lower().rstrip(".")
    assert body == {
        "error": f"the image proxy may not fetch from {shown}",
        "code": "host_not_allowed",
        "details": {"host": shown},
    }
    assert upstream.log == []


def test_spellings_that_are_not_urls_are_400(build: Build, upstream: HTTPServer) -> None:
    for host in ("0177.0.0.1", "127.0.0.1.", "[::1%25lo]", "127.0.0.1:0"):
        response = lvgl(build(), f"http://{host}:{upstream.port}/a.png")
        assert response.status_code in (400, 403), host
    assert upstream.log == []


def test_a_redirect_inside_is_refused(build: Build, upstream: HTTPServer) -> None:
    """An allowed host that redirects to a loopback address: the second hop is refused."""
    upstream.expect_request("/jump").respond_with_response(
        Response(status=302, headers={"Location": f"http://127.0.0.1:{upstream.port}/a.png"})
    )
    client = build(image_proxy_allowed_hosts=f"localhost:{upstream.port}")
    url = f"http://localhost:{upstream.port}/jump"
    body = assert_error(lvgl(client, url), 403, "host_not_allowed")
    assert body["details"] == {"host": "127.0.0.1"}
    assert [request.path for request, _ in upstream.log] == ["/jump"]


# --- the allowlist -----------------------------------------------------------------------


def test_an_entry_without_a_port_admits_only_80_and_443(build: Build, upstream: HTTPServer) -> None:
    for entry in ("127.0.0.1", "127.0.0.0/8", "localhost", "[::ffff:127.0.0.1]"):
        client = build(image_proxy_allowed_hosts=entry)
        assert_error(lvgl(client, upstream.url_for("/a.png")), 403, "host_not_allowed")
    assert upstream.log == []


def test_an_entry_with_the_port_admits(build: Build, upstream: HTTPServer) -> None:
    port = upstream.port
    for entry in (f"127.0.0.1:{port}", f"127.0.0.0/8:{port}", f"10.0.0.0/8,127.0.0.1:{port}"):
        client = build(image_proxy_allowed_hosts=entry)
        assert lvgl(client, upstream.url_for("/a.png")).status_code == 200, entry
    name_only = build(image_proxy_allowed_hosts=f"localhost:{port}")
    assert lvgl(name_only, f"http://localhost:{port}/a.png").status_code == 200
    # A name entry admits that name, not the address it happens to have.
    assert_error(lvgl(name_only, upstream.url_for("/a.png")), 403, "host_not_allowed")


def test_public_in_the_list_keeps_inside_addresses_out(build: Build, upstream: HTTPServer) -> None:
    client = build(image_proxy_allowed_hosts=f"public,localhost:{upstream.port}")
    assert_error(lvgl(client, upstream.url_for("/a.png")), 403)
    assert lvgl(client, f"http://localhost:{upstream.port}/a.png").status_code == 200


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("ha.local", Entry(name="ha.local")),
        ("HA.Local.:8123", Entry(name="ha.local", port=8123)),
        ("192.168.1.0/24", Entry(network=ipaddress.ip_network("192.168.1.0/24"))),
        ("192.168.1.7:8123", Entry(network=ipaddress.ip_network("192.168.1.7/32"), port=8123)),
        ("fd00::/8", Entry(network=ipaddress.ip_network("fd00::/8"))),
        ("[fd00::/8]:8123", Entry(network=ipaddress.ip_network("fd00::/8"), port=8123)),
        ("[fd00::1]", Entry(network=ipaddress.ip_network("fd00::1/128"))),
        ("public", Entry(public=True)),
        ("Public:8443", Entry(public=True, port=8443)),
    ],
)
def test_entries_parse(text: str, entry: Entry) -> None:
    assert Entry.parse(text) == entry


@pytest.mark.parametrize(
    "text", ["", "http://ha.local/", "ha.local:", "ha.local:0", "ha.local:65536", "a b", "[fd00::1"]
)
def test_bad_entries_are_refused(text: str) -> None:
    with pytest.raises(EntryError):
        Entry.parse(text)


def address(text: str) -> IpAddress:
    return ipaddress.ip_address(text)


def test_policy_matrix() -> None:
    policy = DestinationPolicy.parse(["ha.local:8123", "192.168.1.0/24", "[fd00::/8]:8443"])
    assert policy.admits("ha.local", address("192.168.7.7"), 8123)
    assert policy.admits("HA.LOCAL.", address("10.0.0.1"), 8123)
    assert not policy.admits("ha.local", address("10.0.0.1"), 80)
    assert policy.admits("nas.lan", address("192.168.1.20"), 443)
    assert not policy.admits("nas.lan", address("192.168.1.20"), 22)
    assert policy.admits("x", address("::ffff:192.168.1.20"), 80)
    assert policy.admits("x", address("fd00::5"), 8443)
    assert not policy.admits("x", address("fd00::5"), 443)
    assert not policy.admits("example.com", address("93.184.215.14"), 443)  # not listed
    default = DestinationPolicy.parse([])
    assert default.admits("example.com", address("93.184.215.14"), 8080)
    assert not default.admits("example.com", address("10.1.2.3"), 443)


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("100.127.0.1", False),
        ("169.254.1.1", False),
        ("172.31.255.255", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("::", False),
        ("::1", False),
        ("::127.0.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a00:1", False),
        ("::ffff:0:7f00:1", False),
        ("::ffff:0:a00:1", False),
        ("::ffff:0:c0a8:101", False),
        ("::ffff:0:808:808", True),
        ("64:ff9b:1::808:808", False),
        ("64:ff9b::808:808", True),
        ("2002:a00:1::", False),
        ("2001:db8::1", False),
        ("2001::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff05::2", False),
    ],
)
def test_public_addresses(text: str, public: bool) -> None:
    assert is_public(address(text)) is public


def test_dns_is_asked_once_and_the_socket_goes_to_the_vetted_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rebinding: whatever the name resolves to later, the connection uses the answer
    that was checked."""
    answers = iter([[address("93.184.215.14")], [address("127.0.0.1")]])
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[IpAddress]:
        lookups.append(host)
        return next(answers)

    connected: list[str] = []

    def connect(self: httpcore.SyncBackend, host: str, port: int, *args: t.Any) -> t.NoReturn:
        connected.append(host)
        raise httpcore.ConnectError("test: no network")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect)
    backend = VettingBackend(DestinationPolicy([], resolver=resolver))
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("rebind.example", 80)
    assert lookups == ["rebind.example"]
    assert connected == ["93.184.215.14"]
    with pytest.raises(HostNotAllowed):
        backend.connect_tcp("rebind.example", 80)
    assert connected == ["93.184.215.14"]


def test_a_name_with_any_inside_address_is_refused() -> None:
    policy = DestinationPolicy(
        [], resolver=lambda host, port: [address("93.184.215.14"), address("127.0.0.1")]
    )
    assert policy.vetted_addresses("mixed.example", 80) is None


# --- answers never tell ports apart ------------------------------------------------------


class NotHttp:
    """A TCP server that greets like SSH and hangs up (or says nothing at all)."""

    def __init__(self, greeting: bytes | None) -> None:
        self.greeting = greeting
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            if self.greeting is None:
                self.held.append(connection)  # accepts, never answers
            else:
                connection.sendall(self.greeting)
                connection.close()

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


def test_closed_open_and_non_http_ports_answer_alike(build: Build) -> None:
    ssh, silent = NotHttp(b"SSH-2.0-OpenSSH_9.6\r\n"), NotHttp(None)
    closed = free_port()
    try:
        ports = [closed, ssh.port, silent.port]
        allowed = ",".join(f"127.0.0.1:{port}" for port in ports)
        client = build(image_proxy_allowed_hosts=allowed, image_proxy_timeout_seconds=0.5)
        bodies = [
            assert_error(lvgl(client, f"http://127.0.0.1:{port}/a.png"), 502) for port in ports
        ]
        assert bodies[0] == {
            "error": "no usable answer from 127.0.0.1",
            "code": "upstream_failed",
            "details": {"reason": "unreachable"},
        }
        assert bodies[1] == bodies[0] and bodies[2] == bodies[0]
        # And without the allowlist, none of them is even tried.
        default = build()
        refusals = [lvgl(default, f"http://127.0.0.1:{port}/a.png").get_json() for port in ports]
        assert refusals[0]["code"] == "host_not_allowed"
        assert refusals[1] == refusals[0] and refusals[2] == refusals[0]
    finally:
        ssh.close()
        silent.close()


# --- nothing an upstream answers is kept for the next caller -----------------------------


def test_an_upstream_cookie_never_reaches_another_caller(
    build: Build, httpserver_ipv4: HTTPServer
) -> None:
    upstream = httpserver_ipv4

    def with_cookie(request: t.Any) -> Response:
        answer = Response(png(), content_type="image/png")
        answer.set_cookie("session", "caller-1-session", path="/")
        return answer

    def redirect_with_cookie(request: t.Any) -> Response:
        answer = Response(status=302, headers={"Location": "/a.png"})
        answer.set_cookie("hop", "set-on-the-redirect", path="/")
        return answer

    upstream.expect_request("/session.png").respond_with_handler(with_cookie)
    upstream.expect_request("/redirect.png").respond_with_handler(redirect_with_cookie)
    upstream.expect_request("/a.png").respond_with_data(png(), content_type="image/png")
    first = build(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")
    second = first.application.test_client()  # another caller of the same worker

    assert lvgl(first, upstream.url_for("/session.png")).status_code == 200
    for _ in range(3):
        assert lvgl(second, upstream.url_for("/a.png")).status_code == 200
    assert lvgl(first, upstream.url_for("/session.png")).status_code == 200
    # Within one request too: a cookie set on a redirect is not sent to where it points.
    assert lvgl(second, upstream.url_for("/redirect.png")).status_code == 200

    paths = [request.path for request, _ in upstream.log]
    assert paths == ["/session.png", "/a.png", "/a.png", "/a.png", "/session.png"] + [
        "/redirect.png",
        "/a.png",
    ]
    for request, _ in upstream.log:
        assert "Cookie" not in request.headers, (request.path, request.headers["Cookie"])
    upstream.clear()
