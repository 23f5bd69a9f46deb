"""A private Dovecot IMAP server on a free loopback port, with one user whose mail is
delivered by writing into its Maildir (what an MTA's delivery agent does)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from framework.testing.processes import terminate
from framework.testing.redis_server import free_port

DOVECOT = "/usr/sbin/dovecot"


class Dovecot:
    """``with Dovecot() as imap: imap.deliver(message_bytes)``; stopped and removed on
    exit. Plain IMAP (no TLS) on 127.0.0.1; the user is ``user`` / ``secret``."""

    def __init__(self, user: str = "user", password: str = "secret") -> None:
        if not Path(DOVECOT).exists():
            raise RuntimeError("dovecot not found: install it (Debian: apt-get install "
                               "dovecot-imapd)")
        self.user, self.password = user, password
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="connector-fleet-dovecot-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def maildir(self) -> Path:
        return self._dir / "mail" / self.user / "Maildir"

    def start(self) -> Dovecot:
        config = self._write_config()
        for sub in ("new", "cur", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        self._dir.chmod(0o755)
        shutil.chown(self._dir / "mail", "nobody", "nogroup")
        for path in (self._dir / "mail").rglob("*"):
            shutil.chown(path, "nobody", "nogroup")
        self._process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_ready()
        return self

    def _write_config(self) -> Path:
        directory = self._dir
        (directory / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        config = directory / "dovecot.conf"
        config.write_text(f"""
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
first_valid_uid = 1
default_internal_user = nobody
default_login_user = nobody
mail_location = maildir:{directory}/mail/%u/Maildir
passdb {{
  driver = passwd-file
  args = {directory}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={directory}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
        return config

    def _wait_until_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                pass
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dovecot did not answer on port {self.port}")
            time.sleep(0.05)

    def log(self) -> str:
        path = self._dir / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def deliver(self, message: bytes) -> None:
        """Put ``message`` in the user's INBOX (Maildir ``new``), atomically."""
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.connector-fleet"
        temporary = self.maildir / "tmp" / name
        temporary.write_bytes(message)
        shutil.chown(temporary, "nobody", "nogroup")
        os.rename(temporary, self.maildir / "new" / name)

    def forget_uids(self) -> None:
        """Stopped, drop the folder's UID list and indexes: on its next start Dovecot
        gives the same mails new UIDs under a new UIDVALIDITY (a rebuilt folder)."""
        for path in self.maildir.glob("dovecot*"):
            path.unlink()

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process)
        self._process = None

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
