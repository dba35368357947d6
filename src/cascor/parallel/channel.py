"""A private line between the training process and one block runner.

Every chunk of a distributed round is one request and one answer. Through Dask's actor calls
that costs ~4.5 ms of round time on a 2-core machine (Dask's comm stack and event loops, in the
driver and the worker, on the cores the epochs need); through a plain socket ~1.3 ms. Both
``processes`` workers (a socketpair) and Dask runners (TCP to the worker's host, TLS when the
cluster uses it) therefore speak this: pickled messages framed by their length.

Pickle is safe here because both ends are ours: a ``processes`` worker is our own child; a Dask
runner accepts a connection only after it presents the token the driver gave it through Dask
(whoever can call a Dask actor can already run any code on the cluster), and the driver
unpickles only answers of runners it started, as it unpickles any Dask result.
"""

from __future__ import annotations

import hmac
import pickle
import select
import socket
import struct
import time

_HEADER = struct.Struct("!Q")
METHODS = ("run", "begin", "end")  # what a runner answers on its line


class Channel:
    """Pickled objects over a stream socket (plain or TLS), each framed by its length."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        # poll(), not select(): select() refuses descriptors >= 1024 (a process with many files open).
        self._poller = None
        if hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(sock.fileno(), select.POLLIN)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            # A request is one small write the other end waits for: send it now.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A peer machine that vanishes (no FIN) is noticed in ~20 s, not never.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 5)):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)

    def send(self, obj) -> None:
        self.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def send_bytes(self, data: bytes) -> None:
        header = _HEADER.pack(len(data))
        if len(data) < 1 << 16:
            self.sock.sendall(header + data)  # a request or a small answer: one segment
        else:
            self.sock.sendall(header)
            self.sock.sendall(data)

    def recv(self):
        return pickle.loads(self.recv_bytes())

    def recv_bytes(self, limit: int | None = None) -> bytearray:
        (size,) = _HEADER.unpack(self._exactly(_HEADER.size))
        if limit is not None and size > limit:
            raise ValueError(f"a message of {size} bytes where at most {limit} were expected")
        return self._exactly(size)

    def _exactly(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:])
            if not k:
                raise EOFError("the other end closed the connection")
            got += k
        return buf

    def poll(self, timeout: float) -> bool:
        """True when a message (or the end of the connection) can be read without waiting."""
        pending = getattr(self.sock, "pending", None)  # TLS may hold decrypted bytes already
        if pending is not None and pending():
            return True
        if self._poller is not None:
            return bool(self._poller.poll(max(0, int(timeout * 1000))))
        return bool(select.select([self.sock], [], [], timeout)[0])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def check_token(channel: Channel, token: bytes, timeout: float = 10.0) -> bool:
    """Read the first message and compare it with ``token`` in constant time. The whole read is
    bounded by ``timeout`` (a peer that sends one byte and stalls is dropped, not waited on)."""
    previous = channel.sock.gettimeout()
    channel.sock.settimeout(timeout)
    try:
        presented = bytes(channel.recv_bytes(limit=len(token)))
    except (EOFError, OSError, ValueError):
        return False
    finally:
        try:
            channel.sock.settimeout(previous)
        except OSError:
            pass
    return hmac.compare_digest(presented, token)


def serve(channel: Channel, runner, token: bytes | None = None) -> None:
    """Answer ``runner``'s requests until the driver closes the line or goes away.

    With ``token``, the first message must be that token (compared in constant time) before
    anything is unpickled.
    """
    if token is not None and not check_token(channel, token):
        channel.close()  # a stranger: nothing unpickled, the runner untouched
        return
    try:
        while True:
            try:
                request = channel.recv_bytes()
            except (EOFError, OSError):
                return  # the driver closed the line or went away
            try:
                method, args = pickle.loads(request)
                if method not in METHODS:
                    raise ValueError(f"unknown request {method!r}")
                answer = ("ok", getattr(runner, method)(*args))
            except Exception as exc:
                answer = ("error", f"{type(exc).__name__}: {exc}")
            try:
                channel.send(answer)
            except OSError:
                return
    finally:
        runner.close()  # stop computing ahead: nobody will fetch it
        channel.close()


class RunnerLink:
    """The driver's end of one runner's line: requests out, answers in, in order.

    ``alive`` is called every half second while an answer is awaited; it raises when the
    runner cannot answer any more (its process exited, its worker left the cluster).
    """

    def __init__(self, channel: Channel, name: str, alive=None):
        self.channel, self.name, self._alive = channel, name, alive
        self._pending = 0  # "end" requests are answered; their answers are read before the next call's

    def send(self, method: str, args: tuple) -> None:
        while self._pending:
            self._read(30)
        try:
            self.channel.send((method, args))
        except OSError as exc:
            raise RuntimeError(f"{self.name} went away ({exc!r})") from None
        self._pending += 1

    def receive(self, stall_timeout: float):
        return self._read(stall_timeout)

    def _read(self, stall_timeout: float):
        deadline = time.monotonic() + stall_timeout
        while not self.channel.poll(0.5):
            if self._alive is not None:
                self._alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer for {stall_timeout:.0f} s")
        try:
            status, value = self.channel.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"{self.name} went away ({exc!r})") from None
        self._pending -= 1
        if status != "ok":
            raise RuntimeError(f"{self.name}: {value}")
        return value

    def close(self) -> None:
        self.channel.close()
