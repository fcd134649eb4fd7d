"""Run every Kami service as its own process on this machine.

    python deploy/local/kami_local.py up [--seed]    # start all services, wait until ready
    python deploy/local/kami_local.py status
    python deploy/local/kami_local.py down

Kafka and MongoDB come from `KAMI_KAFKA_BOOTSTRAP` / `KAMI_MONGODB_URI` (the
run script starts the local stack and sets them). Secrets for the local
platform (token signing keys, encryption keys, gateway secrets) are generated
once into `.local-stack/platform/secrets.json` (mode 0600) and handed to the
services as environment variables; production supplies its own.

The end-to-end tests use the same `Platform` class with their own ports,
database names and topic namespace, so they never touch a running demo.

A service may run as several processes (`replica_ports`, the bench's
`--replicas`): the first is `<service>`, the others `<service>-2`, ... Each
has its own HTTP port, pid file and log; all share the service's database
and consumer group (`kami-<service>`), so Kafka shares the partitions among
them and one of them holds the outbox relay's lease. Other services call
the first process.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
from uuid import uuid4

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kami_cli.config import SERVICE_PORTS, package_of

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HOME = REPO / ".local-stack" / "platform"

# The demo platform's first operator: registering this phone gives the role.
DEMO_OPERATOR_PHONE = "13900000001"

# Start order: producers of reference data first. Each has its fixed port,
# kept in one place: the CLI's table (`kami serve all` uses it too).
SERVICES: dict[str, int] = dict(SERVICE_PORTS)


def available_services() -> list[str]:
    """Services that `kami serve` can run (they have an app)."""
    return [
        name
        for name in SERVICES
        if (REPO / "services" / name / "src" / package_of(name) / "app.py").exists()
    ]


def serve_command(service: str) -> list[str]:
    """`kami serve <service>`: the venv's console script, else the same as a module."""
    script = Path(sys.executable).parent / "kami"
    if script.exists():
        return [str(script), "serve", service]
    return [sys.executable, "-m", "kami_cli", "serve", service]


def free_port() -> int:
    """A port nobody listens on now, taken below the kernel's ephemeral range:
    while a test has a service stopped, an outgoing connection of any process
    could otherwise be handed that service's port and keep it from restarting."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low = 20000 if ephemeral_low > 21000 else 1024
    for _ in range(200):
        port = random.randrange(low, ephemeral_low)  # noqa: S311 (not a secret)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {low} and {ephemeral_low}")


def is_serve_command(cmdline: bytes, service: str) -> bool:
    """Whether a process's /proc cmdline is `kami serve <service>` (either form),
    so a pid file left by a dead process and reused by another is not ours."""
    argv = [part.decode(errors="replace") for part in cmdline.split(b"\0") if part]
    if argv[-2:] != ["serve", service]:
        return False
    return any(Path(part).name == "kami" or part == "kami_cli" for part in argv[:-2])


def generate_secrets() -> dict[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    def key32() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    return {
        "KAMI_AUTH_PUBLIC_KEY": public,
        "KAMI_IDENTITY_SIGNING_KEY": private,
        "KAMI_SERVICE_TOKEN_SECRET": secrets.token_urlsafe(48),
        "KAMI_IDENTITY_ID_NUMBER_KEY": key32(),
        "KAMI_IDENTITY_FINGERPRINT_KEY": key32(),
        "KAMI_INVENTORY_MASTER_KEY": key32(),
        "KAMI_INVENTORY_FINGERPRINT_KEY": key32(),
        "KAMI_DELIVERY_VAULT_KEY": key32(),
        "KAMI_RESELLER_SECRET_KEY": key32(),
        "KAMI_PAYMENT_WECHAT_PAY_SECRET": secrets.token_urlsafe(32),
        "KAMI_PAYMENT_ALIPAY_SECRET": secrets.token_urlsafe(32),
        "KAMI_WEB_SESSION_KEY": key32(),
    }


@dataclass
class Platform:
    kafka_bootstrap: str
    mongodb_uri: str
    home: Path = DEFAULT_HOME
    ports: Mapping[str, int] = field(default_factory=lambda: dict(SERVICES))
    database_prefix: str = "kami"
    topic_prefix: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # The HTTP ports of a service's further processes (`<service>-2`, ...).
    replica_ports: Mapping[str, Sequence[int]] = field(default_factory=dict)
    # The processes this object started, for their exit status.
    _children: dict[str, subprocess.Popen[bytes]] = field(
        default_factory=dict, init=False, repr=False
    )

    @classmethod
    def isolated(
        cls,
        kafka_bootstrap: str,
        mongodb_uri: str,
        *,
        home: Path,
        name: str,
        extra_env: Mapping[str, str],
        replicas: Mapping[str, int] | None = None,
    ) -> Self:
        """A platform on free ports in a namespace of its own (databases
        `<name><run>_*`, topics `kami-<name>-<run>.*`), so it never meets the
        demo or another run on the same servers; `replicas` processes of a
        service instead of one."""
        run = uuid4().hex[:8]
        return cls(
            kafka_bootstrap,
            mongodb_uri,
            home=home,
            ports={service: free_port() for service in SERVICES},
            database_prefix=f"{name}{run}",
            topic_prefix=f"kami-{name}-{run}",
            extra_env=extra_env,
            replica_ports={
                service: [free_port() for _ in range(count - 1)]
                for service, count in (replicas or {}).items()
                if count > 1
            },
        )

    @contextmanager
    def running(self, services: Iterable[str]) -> Iterator[Self]:
        """`services` up for the block, and stopped after it (also on a failure)."""
        started = list(services)
        try:
            self.up(started)
            yield self
        finally:
            self.down(started)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        (self.home / "run").mkdir(exist_ok=True)

    # -- configuration -------------------------------------------------------

    def secrets(self) -> dict[str, str]:
        path = self.home / "secrets.json"
        if path.exists():
            stored: dict[str, str] = json.loads(path.read_text())
            missing = {k: v for k, v in generate_secrets().items() if k not in stored}
            if not missing:
                return stored
            stored.update(missing)
        else:
            stored = generate_secrets()
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2))
        return stored

    def url(self, process: str) -> str:
        """The HTTP address of a process (a service's name: its first process)."""
        return f"http://127.0.0.1:{self.port_of(process)}"

    def processes(self, service: str) -> list[str]:
        """The service's processes: `<service>`, then `<service>-2`, ..."""
        further = self.replica_ports.get(service, ())
        return [service, *(f"{service}-{n}" for n in range(2, len(further) + 2))]

    def replicas(self, service: str) -> list[str]:
        """The service's processes after the first."""
        return self.processes(service)[1:]

    def urls(self, service: str) -> list[str]:
        return [self.url(process) for process in self.processes(service)]

    def port_of(self, process: str) -> int:
        service, n = service_of(process)
        return self.ports[service] if n == 1 else self.replica_ports[service][n - 2]

    def env_for(self, process: str) -> dict[str, str]:
        service, _ = service_of(process)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAMI_")}
        env.update(self.secrets())
        env.update(
            {
                "KAMI_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "KAMI_MONGODB_URI": self.mongodb_uri,
                "KAMI_MONGODB_DATABASE": f"{self.database_prefix}_{service}",
                "KAMI_HTTP_HOST": "127.0.0.1",
                "KAMI_HTTP_PORT": str(self.port_of(process)),
                "PYTHONUNBUFFERED": "1",
                # The local platform has no real gateways: mount their stand-in.
                "KAMI_PAYMENT_SIMULATOR_ENABLED": "true",
                # ...nor real key issuers: verify keys with the simulated one.
                "KAMI_DELIVERY_ISSUER_SIMULATOR_ENABLED": "true",
            }
        )
        for other, port in self.ports.items():
            env[f"KAMI_{service.upper()}_{other.upper()}_URL"] = f"http://127.0.0.1:{port}"
        if self.topic_prefix:
            env["KAMI_TOPIC_PREFIX"] = self.topic_prefix
        env.update(self.extra_env)
        return env

    # -- processes -----------------------------------------------------------

    def _pid_file(self, process: str) -> Path:
        return self.home / "run" / f"{process}.pid"

    def log_file(self, process: str) -> Path:
        return self.home / "logs" / f"{process}.log"

    def pid(self, process: str) -> int | None:
        path = self._pid_file(process)
        if not path.exists():
            return None
        pid = int(path.read_text())
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if is_serve_command(cmdline, service_of(process)[0]) else None

    def start(self, name: str) -> int:
        """Start a process (a service's name: its first process)."""
        existing = self.pid(name)
        if existing:
            return existing
        log = self.log_file(name).open("ab")
        process = subprocess.Popen(
            serve_command(service_of(name)[0]),
            cwd=REPO,
            env=self.env_for(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pid_file(name).write_text(str(process.pid))
        # Just after exec, /proc/<pid>/cmdline reads empty for a moment, and
        # `pid()` would take the new process for a stranger (or for dead).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{process.pid}/cmdline").read_bytes():
                    break
            time.sleep(0.01)
        self._children[name] = process
        return process.pid

    def _exit_status(self, process: str) -> str:
        child = self._children.get(process)
        if child is None or child.poll() is None:
            return "exited"
        code = child.returncode
        return f"exited with status {code}" if code >= 0 else f"killed by signal {-code}"

    def wait_ready(self, process: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            child = self._children.get(process)
            if self.pid(process) is None and (child is None or child.poll() is not None):
                raise RuntimeError(
                    f"{process} {self._exit_status(process)}; see {self.log_file(process)}:\n"
                    + self.tail(process)
                )
            try:
                response = httpx.get(f"{self.url(process)}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(
            f"{process} not ready after {timeout:.0f}s ({last}):\n{self.tail(process)}"
        )

    def stop(self, process: str, *, kill: bool = False, timeout: float = 15.0) -> None:
        pid = self.pid(process)
        if pid is None:
            self._pid_file(process).unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self._pid_file(process).unlink(missing_ok=True)

    def up(self, services: Iterable[str], *, replicas: bool = True) -> None:
        """Start every process of `services` (only their first with
        `replicas=False`) and wait until each is ready."""
        started = [
            process
            for service in services
            for process in (self.processes(service) if replicas else [service])
        ]
        for process in started:
            self.start(process)
        for process in started:
            self.wait_ready(process)

    def down(self, services: Iterable[str]) -> None:
        for service in reversed(list(services)):
            for process in reversed(self.processes(service)):
                self.stop(process)

    def tail(self, process: str, lines: int = 40) -> str:
        path = self.log_file(process)
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def service_of(process: str) -> tuple[str, int]:
    """`ordering-2` -> (`ordering`, 2); a service's name is its first process."""
    service, _, n = process.rpartition("-")
    if service and n.isdigit() and int(n) >= 2:
        return service, int(n)
    return process, 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description="Run every Kami service locally.")
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args()
    kafka = os.environ.get("KAMI_KAFKA_BOOTSTRAP")
    mongo = os.environ.get("KAMI_MONGODB_URI")
    if args.command == "up" and (not kafka or not mongo):
        hint = 'eval "$(deploy/local/stack env)"'
        print(f"platform: set KAMI_KAFKA_BOOTSTRAP and KAMI_MONGODB_URI ({hint})", file=sys.stderr)
        return 2
    platform = Platform(
        kafka or "", mongo or "", extra_env={"KAMI_IDENTITY_OPERATOR_PHONES": DEMO_OPERATOR_PHONE}
    )
    services = available_services()
    if args.command == "up":
        try:
            platform.up(services)
        except RuntimeError as exc:
            print(f"platform: {exc}", file=sys.stderr)
            return 1
        for service in services:
            pid, log = platform.pid(service), platform.log_file(service)
            print(f"  {service:<11} {platform.url(service)}  (pid {pid}, log {log})")
    elif args.command == "down":
        platform.down(services)
    else:
        for service in services:
            pid = platform.pid(service)
            state = f"running pid {pid}" if pid else "stopped"
            print(f"  {service:<11} {state:<18} {platform.url(service)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
