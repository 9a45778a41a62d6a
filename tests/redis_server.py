"""Throwaway redis-server processes and a silent TCP listener for the test session."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from typing_extensions import Self

__all__ = [
    "BlackholeServer",
    "RedisServer",
    "RedisServerError",
    "TLSFiles",
    "find_redis_server",
    "free_port",
    "tls_files",
]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class RedisServerError(RuntimeError):
    """redis-server could not be started; the message carries its log."""


def find_redis_server() -> str | None:
    """The redis-server binary: ``$KIROCACHE_REDIS_SERVER``, else ``redis-server`` on PATH."""
    configured = os.environ.get("KIROCACHE_REDIS_SERVER")
    if configured:
        return configured if Path(configured).is_file() else shutil.which(configured)
    return shutil.which("redis-server")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a TLS server: its certificate and key, and the CA that signed them."""

    cert: str
    key: str
    ca: str


def tls_files(directory: Path, *, client_auth: bool = False) -> TLSFiles:
    """A throwaway CA and a certificate for localhost / 127.0.0.1 signed by it.

    With ``client_auth`` the certificate may also present itself as a client: a Redis
    Cluster's bus over TLS is mutual, each node showing its certificate to the others.
    """
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kirocache test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = TLSFiles(
        cert=str(directory / "server.pem"),
        key=str(directory / "server.key"),
        ca=str(directory / "ca.pem"),
    )
    Path(paths.ca).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.key).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def _ping(port: int, tls: TLSFiles | None) -> bool:
    """Whether a server on ``port`` answers PING (an auth error is an answer too)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            if tls is None:
                raw.sendall(b"PING\r\n")
                reply = raw.recv(64)
            else:
                context = ssl.create_default_context(cafile=tls.ca)
                with context.wrap_socket(raw, server_hostname="localhost") as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-WRONGPASS"))


class RedisServer:
    """A redis-server on a free loopback port, persistence off, in its own temp dir.

    Args:
        binary: The redis-server binary; found with :func:`find_redis_server` if omitted.
        unix_socket: Also listen on a unix socket (see :attr:`unix_socket_path`).
        password: ``requirepass`` for the default user.
        acl_user: ``(name, password)`` of an extra ACL user allowed everything.
        maxmemory: ``maxmemory`` setting, e.g. ``"10mb"``.
        tls: Serve TLS only (``rediss://``) with these files; clients need no certificate.
        extra_args: More ``--option value`` arguments.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        unix_socket: bool = False,
        password: str | None = None,
        acl_user: tuple[str, str] | None = None,
        maxmemory: str | None = None,
        tls: TLSFiles | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            msg = "redis-server not found (put it on PATH or set KIROCACHE_REDIS_SERVER)"
            raise RedisServerError(msg)
        self.binary = found
        self.password = password
        self.acl_user = acl_user
        self._tempdir = tempfile.TemporaryDirectory(prefix="kirocache-redis-")
        self.dir = Path(self._tempdir.name)
        self.unix_socket_path = str(self.dir / "redis.sock") if unix_socket else None
        self._maxmemory = maxmemory
        self.tls = tls
        self._extra_args = list(extra_args)
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.dir / "redis.log"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (``rediss://localhost`` with TLS), with the password."""
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}localhost:{self.port}/0"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def _args(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key]
            args += ["--tls-ca-cert-file", self.tls.ca]
        else:
            args += ["--port", str(self.port)]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        args += ["--logfile", str(self.log_path), "--daemonize", "no"]
        args += ["--enable-debug-command", "local"]
        if self.unix_socket_path:
            args += ["--unixsocket", self.unix_socket_path, "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        if self.acl_user:
            name, secret = self.acl_user
            args += ["--user", name, "on", f">{secret}", "~*", "&*", "+@all"]
        if self._maxmemory:
            args += ["--maxmemory", self._maxmemory]
        return args + self._extra_args

    def start(self) -> Self:
        """Start the server (on a new free port the first time, the same port after).

        Returns:
            The server, for chaining.

        Raises:
            RedisServerError: It did not answer PING in time; the message has its log.
        """
        if self.running:
            return self
        fresh_port = self.port == 0
        for _attempt in range(3):
            if fresh_port:
                self.port = free_port()
            # Config errors go to stderr before the log file opens: keep both.
            with (self.dir / "stderr.log").open("ab") as output:
                self._process = subprocess.Popen(
                    self._args(), stdout=output, stderr=subprocess.STDOUT
                )
            if self._wait_ready():
                return self
            self.stop()
            # Another process may have taken the port between probing and binding.
            if not fresh_port or "already in use" not in self._log():
                break
        msg = f"redis-server did not answer PING on port {self.port}; its log:\n{self._log()}"
        raise RedisServerError(msg)

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if _ping(self.port, self.tls):
                return True
            time.sleep(0.02)
        return False

    def _log(self) -> str:
        paths = [self.dir / "stderr.log", self.log_path]
        texts = [p.read_text(errors="replace")[-4000:] for p in paths if p.is_file()]
        return "\n".join(texts) or "(no log)"

    def stop(self) -> None:
        """Terminate the server by its pid and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop the server and start it again on the same port (data is lost)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        self._tempdir.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BlackholeServer:
    """A loopback TCP listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start accepting in a background thread.

        Returns:
            The server, for chaining.
        """
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._accepted.append(conn)

    def stop(self) -> None:
        """Stop the thread and close the listener and every accepted connection."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._listener.close()
        for conn in self._accepted:
            conn.close()
        self._accepted.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
