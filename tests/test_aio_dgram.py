"""The asyncio event loop: create_datagram_endpoint and the datagram transport (UDP over IPv4
and IPv6, Unix datagram sockets), on qloop's two implementations and asyncio's loop (the
reference)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import warnings
from typing import Any

import pytest

from _aio_support import (
    Recorder,
    RecordingProtocol,
    collect,
    run,
)

HAS_IPV6 = socket.has_ipv6
try:
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
except OSError:
    HAS_IPV6 = False


class Proto(RecordingProtocol, asyncio.DatagramProtocol):
    """Records datagrams, errors and flow-control calls; echoes with ``echo``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, echo: bool = False) -> None:
        super().__init__(loop)
        self.echo = echo
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[BaseException] = []
        self.got = asyncio.Event()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert type(data) is bytes
        self.datagrams.append((data, addr))
        self.got.set()
        if self.echo:
            self.transport.sendto(data.upper(), addr)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self.got.set()


async def wait_for(proto: Proto, n: int) -> list[tuple[bytes, Any]]:
    while len(proto.datagrams) + len(proto.errors) < n:
        proto.got.clear()
        await proto.got.wait()
    return proto.datagrams


async def echo_pair(loop: asyncio.AbstractEventLoop, host: str, family: int = 0
                    ) -> tuple[Any, Proto, Any, Proto]:
    st, sp = await loop.create_datagram_endpoint(lambda: Proto(loop, echo=True),
                                                 local_addr=(host, 0), family=family)
    addr = st.get_extra_info("sockname")
    ct, cp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                 remote_addr=addr[:2], family=family)
    return st, sp, ct, cp


@pytest.mark.parametrize("host", ["127.0.0.1",
                                  pytest.param("::1", marks=pytest.mark.skipif(
                                      not HAS_IPV6, reason="no IPv6"))])
def test_udp_echo(loop: asyncio.AbstractEventLoop, host: str) -> None:
    async def main() -> None:
        st, sp, ct, cp = await echo_pair(loop, host)
        assert sp.events == ["made"] and cp.events == ["made"]
        assert isinstance(ct, asyncio.Transport)
        if not isinstance(loop, asyncio.BaseEventLoop):  # asyncio's is one from 3.12 only
            assert isinstance(ct, asyncio.DatagramTransport)
        server_addr = st.get_extra_info("sockname")
        client_addr = ct.get_extra_info("sockname")
        assert ct.get_extra_info("peername") == server_addr
        assert st.get_extra_info("peername") is None
        assert ct.get_extra_info("socket").getsockname() == client_addr
        ct.sendto(b"one")
        ct.sendto(bytearray(b"two"))
        ct.sendto(memoryview(b"three"), server_addr)  # the connected peer: allowed
        got = await wait_for(cp, 3)
        assert [d for d, _ in got] == [b"ONE", b"TWO", b"THREE"]
        assert all(a == server_addr for _, a in got)
        assert [a for _, a in sp.datagrams] == [client_addr] * 3
        assert "fd=" in repr(ct) and "read=polling" in repr(ct)
        assert ct.get_write_buffer_size() == 0
        ct.close()
        assert ct.is_closing()
        assert await cp.done is None
        st.close()
        assert await sp.done is None
        assert cp.events == ["made", ("lost", None)]
        assert "closed" in repr(ct)

    run(loop, main())


def test_many_peers_get_their_own_replies(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        st, _ = await loop.create_datagram_endpoint(lambda: Proto(loop, echo=True),
                                                    local_addr=("127.0.0.1", 0))
        addr = st.get_extra_info("sockname")
        clients = [await loop.create_datagram_endpoint(lambda: Proto(loop), remote_addr=addr)
                   for _ in range(3)]
        for rnd in range(4):
            for i, (ct, _) in enumerate(clients):
                ct.sendto(f"c{i}r{rnd}".encode())
        for i, (ct, cp) in enumerate(clients):
            got = await wait_for(cp, 4)
            assert [d for d, _ in got] == [f"C{i}R{r}".encode() for r in range(4)]
            ct.close()
        # replies to addresses given as new tuples, and by name (the socket resolves it)
        port = clients[0][0].get_extra_info("sockname")[1]
        st.sendto(b"new tuple", ("127.0.0.1", port))
        st.sendto(b"by name", ("localhost", port))
        st.close()

    run(loop, main())


def test_unconnected_endpoint_sendto(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        rt, rp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     local_addr=("127.0.0.1", 0))
        st, sp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     family=socket.AF_INET)
        assert st.get_extra_info("peername") is None
        target = rt.get_extra_info("sockname")
        st.sendto(b"a", target)
        st.sendto(b"b", target)
        got = await wait_for(rp, 2)
        assert [d for d, _ in got] == [b"a", b"b"]
        rt.close()
        st.close()
        await sp.done

    run(loop, main())


def test_unconnected_sendto_by_number_and_by_name(loop: asyncio.AbstractEventLoop) -> None:
    # a numeric address is converted in C in the core; a name goes to the socket module
    async def main() -> None:
        rt, rp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     local_addr=("127.0.0.1", 0))
        port = rt.get_extra_info("sockname")[1]
        st, sp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     local_addr=("127.0.0.1", 0))
        st.sendto(b"numeric", ("127.0.0.1", port))
        st.sendto(b"named", ("localhost", port))
        st.sendto(b"again", ("127.0.0.1", port))
        got = await wait_for(rp, 3)
        assert sorted(d for d, _ in got) == [b"again", b"named", b"numeric"]
        rt.close()
        st.close()
        await sp.done

    run(loop, main())


def test_endpoint_on_a_given_socket(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop), sock=s)
        assert t.get_extra_info("socket").fileno() == s.fileno()
        t.abort()
        assert await p.done is None
        assert s.fileno() == -1  # the transport closed it
        with pytest.raises(TypeError):  # reuse_address: removed in asyncio 3.11
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                local_addr=("127.0.0.1", 0),
                                                reuse_address=True)

    run(loop, main())


def test_unix_datagram_sockets(loop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    server_path = str(tmp_path / "server.sock")
    client_path = str(tmp_path / "client.sock")

    async def main() -> None:
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop, echo=True), local_addr=server_path, family=socket.AF_UNIX)
        ct, cp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=client_path, remote_addr=server_path,
            family=socket.AF_UNIX)
        ct.sendto(b"over unix")
        got = await wait_for(cp, 1)
        assert got == [(b"OVER UNIX", server_path)]
        assert sp.datagrams == [(b"over unix", client_path)]
        ct.close()
        st.close()
        await cp.done
        await sp.done

    run(loop, main())
    # a stale socket file is replaced, as asyncio does
    async def again() -> None:
        st, sp = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=server_path, family=socket.AF_UNIX)
        st.close()
        await sp.done

    run(loop, again())


def unix_dgram_pair(tmp_path: Any) -> tuple[socket.socket, socket.socket]:
    """``a`` (non-blocking) connected to ``b``, bound to a path: a peer that does not read
    makes ``a``'s sends block once its queue is full."""
    path = str(tmp_path / "peer.sock")
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.bind(path)
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.connect(path)
    a.setblocking(False)
    return a, b


def test_buffering_and_flow_control(loop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    a, b = unix_dgram_pair(tmp_path)

    async def main() -> Proto:
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop), sock=a)
        t.set_write_buffer_limits(high=4096)
        assert t.get_write_buffer_limits() == (1024, 4096)
        n = 0
        while "pause" not in p.events:
            t.sendto(b"%06d" % n + b"x" * 994)
            n += 1
            assert n < 100_000, "the peer never filled up"
        assert t.get_write_buffer_size() > 4096
        if not isinstance(loop, asyncio.BaseEventLoop):
            # 8 bytes of header per datagram, as asyncio counts them from Python 3.13
            assert t.get_write_buffer_size() % (1000 + 8) == 0
        t.close()  # after the buffered datagrams
        assert t.is_closing()
        b.setblocking(False)
        seen = []
        while True:
            try:
                seen.append(b.recv(2000))
            except BlockingIOError:
                if p.done.done():
                    break
                await asyncio.sleep(0.001)
        assert [int(d[:6]) for d in seen] == list(range(n))  # all of them, in order
        assert await p.done is None
        return p

    try:
        p = run(loop, main())
    finally:
        b.close()
    assert p.events == ["made", "pause", "resume", ("lost", None)]


def test_abort_drops_buffered_datagrams(loop: asyncio.AbstractEventLoop, tmp_path: Any) -> None:
    a, b = unix_dgram_pair(tmp_path)

    async def main() -> None:
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop), sock=a)
        while not t.get_write_buffer_size():
            t.sendto(b"x" * 1000)
        t.abort()
        if not isinstance(loop, asyncio.BaseEventLoop):  # asyncio's keeps counting them
            assert t.get_write_buffer_size() == 0
        assert await p.done is None

    try:
        run(loop, main())
    finally:
        b.close()


def test_pause_and_resume_reading(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        st, sp, ct, cp = await echo_pair(loop, "127.0.0.1")
        st.pause_reading()
        assert not st.is_reading()
        ct.sendto(b"held")
        for _ in range(5):
            await asyncio.sleep(0)
        assert sp.datagrams == []
        st.resume_reading()
        assert (await wait_for(cp, 1))[0][0] == b"HELD"
        ct.close()
        st.close()
        await sp.done

    run(loop, main())


def test_error_received_on_a_refused_port(loop: asyncio.AbstractEventLoop) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()

    async def main() -> None:
        ct, cp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     remote_addr=("127.0.0.1", closed_port))
        for _ in range(50):
            ct.sendto(b"anyone?")
            await asyncio.sleep(0.001)
            if cp.errors:
                break
        assert cp.errors and isinstance(cp.errors[0], ConnectionRefusedError)
        assert not ct.is_closing()  # an error, not the end
        ct.close()
        await cp.done

    run(loop, main())


def test_sendto_errors(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        st, sp, ct, cp = await echo_pair(loop, "127.0.0.1")
        with pytest.raises(ValueError, match="Invalid address: must be None or"):
            ct.sendto(b"x", ("127.0.0.1", 1))
        with pytest.raises(TypeError, match="bytes-like"):
            ct.sendto("text")
        rec = Recorder()
        loop.set_exception_handler(rec)
        st.sendto(b"x", None)  # no address on an unconnected socket: fatal, as in asyncio
        assert isinstance(await sp.done, TypeError)
        assert rec.contexts and rec.contexts[0]["message"] == \
            "Fatal write error on datagram transport"
        if not isinstance(loop, asyncio.BaseEventLoop):
            # ignored (asyncio's unconnected transport fails on its closed socket)
            st.sendto(b"after close", ("127.0.0.1", 9))
        ct.close()
        await cp.done

    run(loop, main())


def test_sendto_between_close_and_connection_lost(loop: asyncio.AbstractEventLoop) -> None:
    # An unconnected transport closed by error_received() still sends (and reports) what is
    # sent before connection_lost(), as asyncio's does; a connected one ignores it.
    class Closing(Proto):
        def error_received(self, exc: Exception) -> None:
            super().error_received(exc)
            self.transport.close()

    too_big = bytes(70000)  # over UDP's limit: EMSGSIZE at once

    async def main() -> None:
        t, p = await loop.create_datagram_endpoint(lambda: Closing(loop),
                                                   local_addr=("127.0.0.1", 0))
        addr = t.get_extra_info("sockname")
        t.sendto(too_big, addr)
        t.sendto(too_big, addr)
        assert await p.done is None
        assert [type(e) for e in p.errors] == [OSError, OSError]
        t, p = await loop.create_datagram_endpoint(lambda: Closing(loop),
                                                   remote_addr=addr)
        t.close()
        t.sendto(too_big)
        assert await p.done is None
        assert p.errors == []

    run(loop, main())


def test_datagram_received_error_is_reported(loop: asyncio.AbstractEventLoop) -> None:
    rec = Recorder()
    loop.set_exception_handler(rec)

    class Failing(Proto):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if data == b"bad":
                raise ZeroDivisionError("in datagram_received")

    async def main() -> None:
        st, sp = await loop.create_datagram_endpoint(lambda: Failing(loop),
                                                     local_addr=("127.0.0.1", 0))
        ct, _ = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=st.get_extra_info("sockname"))
        ct.sendto(b"bad")
        await wait_for(sp, 1)
        ct.sendto(b"good")
        assert [d for d, _ in await wait_for(sp, 2)] == [b"bad", b"good"]
        assert not st.is_closing()
        ct.close()
        st.close()
        await sp.done

    run(loop, main())
    assert len(rec.contexts) == 1
    assert isinstance(rec.contexts[0]["exception"], ZeroDivisionError)


def test_endpoint_arguments(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        factory = lambda: Proto(loop)
        with pytest.raises(ValueError, match="unexpected address family"):
            await loop.create_datagram_endpoint(factory)
        with pytest.raises(TypeError, match="2-tuple is expected"):
            await loop.create_datagram_endpoint(factory, local_addr="127.0.0.1")
        with pytest.raises(TypeError, match="string is expected"):
            await loop.create_datagram_endpoint(factory, local_addr=("x", 1),
                                                family=socket.AF_UNIX)
        tcp = socket.socket()
        with pytest.raises(ValueError, match="(A datagram socket|A UDP Socket) was expected"):
            await loop.create_datagram_endpoint(factory, sock=tcp)
        tcp.close()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(ValueError, match=r"can not be used when sock is specified\. "
                                             r"\(local_addr=\('127.0.0.1', 0\)\)"):
            await loop.create_datagram_endpoint(factory, sock=udp,
                                                local_addr=("127.0.0.1", 0))
        udp.close()
        with pytest.raises(OSError):
            await loop.create_datagram_endpoint(factory, local_addr=("192.0.2.1", 0))

    run(loop, main())


def test_socket_options(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        t, p = await loop.create_datagram_endpoint(
            lambda: Proto(loop), local_addr=("127.0.0.1", 0), reuse_port=True,
            allow_broadcast=True)
        sock = t.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        # allow_broadcast with remote_addr: the default destination, not connected
        t2, p2 = await loop.create_datagram_endpoint(
            lambda: Proto(loop), remote_addr=t.get_extra_info("sockname"),
            allow_broadcast=True)
        assert t2.get_extra_info("peername") is None
        t2.sendto(b"to the default address")
        assert (await wait_for(p, 1))[0][0] == b"to the default address"
        t.close()
        t2.close()
        await p2.done

    run(loop, main())


def test_unclosed_datagram_transport_warns(loop_factory: Any) -> None:
    loop = loop_factory()

    async def main() -> Any:
        t, _ = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                   local_addr=("127.0.0.1", 0))
        return t

    t = run(loop, main())
    loop.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del t
        collect()
    assert any("unclosed transport" in str(c.message) for c in caught)


def test_empty_datagram_is_sent(qloop_loop: Any) -> None:
    # as asyncio does from Python 3.13 (3.12 and older drop it silently)
    loop = qloop_loop

    async def main() -> None:
        st, sp, ct, _ = await echo_pair(loop, "127.0.0.1")
        ct.sendto(b"")
        assert (await wait_for(sp, 1))[0][0] == b""
        ct.close()
        st.close()
        await sp.done

    run(loop, main())


def test_sendto_of_a_closed_loop_transport_fd_is_refused(qloop_loop: Any) -> None:
    loop = qloop_loop

    async def main() -> None:
        t, p = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                   local_addr=("127.0.0.1", 0))
        fd = t.get_extra_info("socket").fileno()
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(fd, lambda: None)
        t.close()
        await p.done

    run(loop, main())


@pytest.mark.skipif(sys.platform != "linux", reason="Linux pid/fd accounting")
def test_no_fd_leak(loop: asyncio.AbstractEventLoop) -> None:
    counts = []

    async def main() -> None:
        for i in range(21):
            if i == 1:  # after one round: the loop's own fds (its epoll fd) exist by now
                counts.append(len(os.listdir("/proc/self/fd")))
            st, sp, ct, cp = await echo_pair(loop, "127.0.0.1")
            ct.sendto(b"x")
            await wait_for(cp, 1)
            ct.close()
            st.close()
            await cp.done
            await sp.done

    run(loop, main())
    assert len(os.listdir("/proc/self/fd")) <= counts[0]


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6")
def test_ipv6_address_forms(loop: asyncio.AbstractEventLoop) -> None:
    async def main() -> None:
        rt, rp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     local_addr=("::1", 0))
        st, sp = await loop.create_datagram_endpoint(lambda: Proto(loop),
                                                     local_addr=("::1", 0))
        port = rt.get_extra_info("sockname")[1]
        st.sendto(b"2-tuple", ("::1", port))
        st.sendto(b"4-tuple", ("::1", port, 0, 0))
        st.sendto(b"long form", ("0:0:0:0:0:0:0:1", port))
        got = await wait_for(rp, 3)
        assert [d for d, _ in got] == [b"2-tuple", b"4-tuple", b"long form"]
        # the sender's address, as the socket module gives it
        assert all(a == st.get_extra_info("sockname") for _, a in got)
        rt.close()
        st.close()
        await sp.done

    run(loop, main())
