"""One baresip process, driven over its ``ctrl_tcp`` socket: the SIP stack of the SIP gateway.

Both the gateway (one baresip per outbound call) and the test callee (one baresip for
every number it answers) use it. What this module knows about baresip 1.0.0 (Debian's
``baresip-core``), in the parts that shape the code:

- each process gets its own config directory, ``net_interface`` set to an address (not
  an interface name, or the SDP advertises another address) and its own ``rtp_ports``;
- commands and events are netstring-framed JSON on ``ctrl_tcp``; a response carries the
  command's ``token``, events carry the SIP Call-ID as ``id``;
- ``quit`` can hang while SIP transactions are pending, so stopping escalates to SIGTERM
  and then SIGKILL;
- its console output names the dialled numbers, so every line is masked before it
  reaches a log file.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_notify.phone import mask_phone

log = logging.getLogger(__name__)

BARESIP = "baresip"
DEFAULT_MODULE_PATH = Path("/usr/lib/baresip/modules")
READY_LINE = "baresip is ready."

# A phone number as it shows up in SIP text (``sip:+8613812345678@``, ``To: <sip:...``):
# 7 to 15 digits, not part of a longer token such as a hex Call-ID or a branch.
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])\+?\d{7,15}(?![\w.])")
_ANSI = re.compile(r"\x1b\[[0-9;]*m|\r")


class BaresipError(RuntimeError):
    """baresip did not start, stopped answering, or refused a command."""


def mask_numbers(text: str) -> str:
    """``text`` with every phone number masked, fit for a log line."""
    return _NUMBER_IN_TEXT.sub(lambda m: mask_phone(m.group()), _ANSI.sub("", text))


def find_baresip() -> str:
    """The baresip binary, or a ``BaresipError`` saying how to install it."""
    path = shutil.which(BARESIP)
    if path is None:
        raise BaresipError(
            "baresip not found; install it with "
            "`apt-get install -y --no-install-recommends baresip-core` (make system-deps)"
        )
    return path


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_sip_port(host: str = "127.0.0.1") -> int:
    """A port P with P and P+1 free for UDP and TCP: baresip binds TLS on P+1."""
    for _ in range(50):
        port = free_tcp_port(host)
        if port < 65534 and _port_free(host, port) and _port_free(host, port + 1):
            return port
    raise BaresipError("no free pair of SIP ports on " + host)


@dataclass(frozen=True)
class BaresipConfig:
    """What goes into one process's ``config`` file.

    :param sip_listen: ``host:port``; port 0 lets the kernel choose (a caller needs no
        fixed port: its Contact header carries the real one)
    :param ctrl_port: the ``ctrl_tcp`` port on 127.0.0.1
    :param rtp_ports: ``low-high``; processes on one host need ranges that do not clash
    :param audio_source: ``module,device`` of what the process sends
    :param modules: codec, audio and filter modules, in baresip's load order
    :param extra: further ``key value`` lines (``snd_path``, ``ausrc_srate``, ...)
    """

    sip_listen: str
    ctrl_port: int
    rtp_ports: str
    audio_source: str
    net_interface: str = "127.0.0.1"
    modules: tuple[str, ...] = ("g711", "aufile", "aubridge")
    max_calls: int = 4
    module_path: Path = DEFAULT_MODULE_PATH
    extra: tuple[tuple[str, str], ...] = ()

    def render(self) -> str:
        lines = [
            ("poll_method", "epoll"),
            ("sip_listen", self.sip_listen),
            ("call_max_calls", str(self.max_calls)),
            ("audio_source", self.audio_source),
            # No sound card here: what the process hears goes into an unconnected bridge.
            ("audio_player", "aubridge,vn-null"),
            ("audio_alert", "aubridge,vn-null"),
            ("rtp_ports", self.rtp_ports),
            ("net_interface", self.net_interface),
            ("module_path", str(self.module_path)),
            *(("module", f"{name}.so") for name in self.modules),
            ("module_tmp", "account.so"),
            ("module_app", "menu.so"),
            ("module_app", "ctrl_tcp.so"),
            ("ctrl_tcp_listen", f"127.0.0.1:{self.ctrl_port}"),
            *self.extra,
        ]
        return "".join(f"{key} {value}\n" for key, value in lines)


def write_config_dir(directory: Path, config: BaresipConfig, accounts: Iterable[str]) -> Path:
    """Write ``config``, ``accounts`` and an empty ``contacts`` (baresip writes samples else)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # accounts may hold the trunk password
    (directory / "config").write_text(config.render(), encoding="utf-8")
    accounts_path = directory / "accounts"
    accounts_path.write_text("".join(f"{line}\n" for line in accounts), encoding="utf-8")
    os.chmod(accounts_path, 0o600)
    (directory / "contacts").write_text("", encoding="utf-8")
    return directory


def _netstring(payload: Mapping[str, Any]) -> bytes:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return str(len(body)).encode() + b":" + body + b","


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone.

    A pid alone can be reused after a crash; pid plus start time names one process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it are plain.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def process_alive(pid: int | None, start_time: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start_time`` still runs (not a zombie)."""
    if not pid:
        return False
    if process_start_time(pid) != start_time:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class BaresipProcess:
    """A running baresip and its control connection.

    Events go to ``on_event`` (on the reader thread, so it must be quick); console lines,
    already masked, go to the log file and to ``on_line``.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        config_dir: Path,
        log_path: Path,
        on_event: Callable[[dict[str, Any]], None] | None,
        on_line: Callable[[str], None] | None,
    ) -> None:
        self.process = process
        self.config_dir = config_dir
        self.log_path = log_path
        self._on_event = on_event
        self._on_line = on_line
        self._ready = threading.Event()
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._responses: dict[str, dict[str, Any]] = {}
        self._response_ready = threading.Condition()
        self._tokens = itertools.count(1)
        self._closed = False
        self._stdout_thread = threading.Thread(
            target=self._read_console, name=f"baresip-{process.pid}-out", daemon=True
        )
        self._stdout_thread.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        config_dir: Path,
        ctrl_port: int,
        log_path: Path,
        *,
        trace: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_line: Callable[[str], None] | None = None,
        startup_timeout_s: float = 10.0,
    ) -> BaresipProcess:
        """Start baresip on ``config_dir`` and connect to its control socket.

        The process gets SIGTERM when the thread that started it ends (``setpriv
        --pdeathsig``): a gateway killed mid-call must not leave a call running that no
        one records, and SIGTERM (unlike SIGKILL) still lets baresip send its BYE.

        :param trace: print SIP messages (``-s``): the caller reads its Call-ID there
        :raises BaresipError: with the log tail, if it does not come up in time
        """
        command = [find_baresip(), "-f", str(config_dir)]
        if trace:
            command.append("-s")
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=config_dir,
            start_new_session=True,  # a Ctrl-C in the terminal is for the pipeline, not here
        )
        baresip = cls(process, config_dir, log_path, on_event, on_line)
        try:
            baresip._connect(ctrl_port, time.monotonic() + startup_timeout_s)
        except BaresipError:
            baresip.stop()
            raise
        return baresip

    def _connect(self, ctrl_port: int, deadline: float) -> None:
        while not self._ready.wait(0.02):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BaresipError(f"baresip did not start; log tail:\n{self.log_tail()}")
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", ctrl_port), timeout=1.0)
                break
            except OSError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BaresipError(
                        f"baresip control port {ctrl_port} unreachable ({exc}); "
                        f"log tail:\n{self.log_tail()}"
                    ) from exc
                time.sleep(0.02)
        self._sock.settimeout(None)
        threading.Thread(
            target=self._read_control, name=f"baresip-{self.pid}-ctrl", daemon=True
        ).start()

    def command(self, command: str, params: str | None = None, timeout_s: float = 3.0) -> str:
        """Run one command and return its response text.

        :raises BaresipError: if baresip answers ``ok: false``, or not within ``timeout_s``
        """
        token = f"vn{next(self._tokens)}"
        message: dict[str, Any] = {"command": command, "token": token}
        if params is not None:
            message["params"] = params
        if self._sock is None:
            raise BaresipError("baresip control socket is not connected")
        with self._send_lock:  # netstrings from two threads must not interleave
            try:
                self._sock.sendall(_netstring(message))
            except OSError as exc:
                raise BaresipError(f"baresip control socket failed: {exc}") from exc
        deadline = time.monotonic() + timeout_s
        with self._response_ready:
            while token not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BaresipError(f"baresip did not answer {command!r} in {timeout_s} s")
                self._response_ready.wait(left)
            response = self._responses.pop(token)
        if not response.get("ok", False):
            raise BaresipError(f"baresip refused {command!r}: {response.get('data')}")
        return str(response.get("data") or "")

    def _read_control(self) -> None:
        buffer = b""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while True:
                head, sep, rest = buffer.partition(b":")
                if not sep or not head.isdigit() or len(rest) < int(head) + 1:
                    break
                size = int(head)
                body, buffer = rest[:size], rest[size + 1 :]
                self._dispatch(body)
        with self._response_ready:
            self._closed = True
            self._response_ready.notify_all()

    def _dispatch(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            log.warning("baresip %s sent unreadable control data", self.pid)
            return
        if message.get("response"):
            with self._response_ready:
                self._responses[str(message.get("token"))] = message
                self._response_ready.notify_all()
        elif message.get("event") and self._on_event is not None:
            try:
                self._on_event(message)
            except Exception:  # a broken handler must not stop the event stream
                log.exception("baresip %s: event handler failed", self.pid)

    def _read_console(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log_file:
            for raw in stdout:
                line = mask_numbers(raw.decode("utf-8", "replace").rstrip("\n"))
                log_file.write(line + "\n")
                log_file.flush()
                if READY_LINE in line:
                    self._ready.set()
                if self._on_line is not None:
                    try:
                        self._on_line(line)
                    except Exception:
                        log.exception("baresip %s: console handler failed", self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, step_s: float = 0.5) -> int | None:
        """Stop baresip: ``quit``, then SIGTERM, then SIGKILL, ``step_s`` apart.

        Returns the exit code (negative for a signal).
        """
        if self.process.poll() is None and self._sock is not None and not self._closed:
            with contextlib.suppress(BaresipError, OSError), self._send_lock:
                self._sock.sendall(_netstring({"command": "quit", "token": "quit"}))
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(sig)
            try:
                self.process.wait(step_s)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._stdout_thread.join(timeout=2.0)
        return self.process.poll()
