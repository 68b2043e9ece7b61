"""The disk spool: export payloads the backend could not take yet, kept until they are delivered.

Layout: ``<spool dir>/<bucket>/<time>-<pid>-<random>-<spans>s.otlp.gz``, one gzip OTLP protobuf
request per file, written atomically (temp file + rename). A bucket holds the payloads for one
(backend URL, API key) pair so a batch is only ever delivered to the project it was recorded
for; the key itself is never written to disk, only its printable prefix and its SHA-256.
Several processes can share a spool: a file is claimed with an advisory lock while it is sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._config import mask_key
from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the server de-duplicates a double delivery
    fcntl = None  # type: ignore[assignment]

DEFAULT_MAX_MB = 256
SUFFIX = ".otlp.gz"
_TARGET = "target.json"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600
_RESCAN_SECONDS = 10.0
_sequence = itertools.count()


def default_spool_dir() -> Path:
    """``AGENTTRACE_SPOOL_DIR``, else the platform's per-user cache directory."""
    configured = os.environ.get("AGENTTRACE_SPOOL_DIR")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "agenttrace" / "Cache" / "spool"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "agenttrace" / "spool"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "agenttrace" / "spool"


def max_spool_bytes() -> int:
    """``AGENTTRACE_SPOOL_MAX_MB`` (default 256) in bytes."""
    raw = os.environ.get("AGENTTRACE_SPOOL_MAX_MB")
    if not raw:
        return DEFAULT_MAX_MB * 1024 * 1024
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise ConfigError(
            f"AGENTTRACE_SPOOL_MAX_MB={raw!r} (from environment) must be a positive number of megabytes"
        )
    return int(value * 1024 * 1024)


@dataclass(frozen=True)
class Entry:
    """One spooled payload."""

    path: Path
    spans: int
    size: int


@dataclass(frozen=True)
class Target:
    """Where a bucket's payloads go (as far as it can be said without the key)."""

    api_url: str
    key_prefix: str
    key_sha256: str


class Spool:
    """The bucket of one (backend URL, API key) pair inside a spool directory."""

    def __init__(
        self, root: str | os.PathLike[str], api_url: str, api_key: str, max_bytes: int
    ) -> None:
        target = Target(api_url, mask_key(api_key), hashlib.sha256(api_key.encode()).hexdigest())
        self._setup(Path(root), target, bucket_name(api_url, api_key), max_bytes)

    @classmethod
    def from_description(cls, described: dict[str, str], max_bytes: int) -> Spool:
        """The bucket :meth:`describe` named, for a process that has not got its key (a run's
        journal is finalised by whichever process comes next)."""
        spool = cls.__new__(cls)
        target = Target(described["api_url"], described["key_prefix"], described["key_sha256"])
        spool._setup(Path(described["spool"]), target, described["bucket"], max_bytes)
        return spool

    def describe(self) -> dict[str, str]:
        """Where this bucket is and whose it is, without the key."""
        return {
            "api_url": self.api_url,
            "spool": os.path.abspath(self.root),
            "bucket": self.directory.name,
            "key_prefix": self.target.key_prefix,
            "key_sha256": self.target.key_sha256,
        }

    def _setup(self, root: Path, target: Target, bucket: str, max_bytes: int) -> None:
        self.root = root
        self.api_url = target.api_url
        self.target = target
        self.directory = root / bucket
        self.max_bytes = max_bytes
        self._full_warned = False
        self._error_warned = False
        self._used = (0, -_RESCAN_SECONDS * 2.0)  # (bytes, when scanned)
        self._lock = threading.Lock()

    # -- writing --------------------------------------------------------------------------------

    def write(self, payload: bytes, spans: int) -> bool:
        """Keep one payload; False (after one warning per process) when it cannot be kept."""
        with self._lock:
            if self._used_bytes() + len(payload) > self.max_bytes:
                if not self._full_warned:
                    self._full_warned = True
                    _warn(
                        f"the spool {self.root} is full ({self.max_bytes // (1024 * 1024)} MB); "
                        f"dropping {spans} spans and any further ones this process cannot deliver. "
                        "Deliver it with `agenttrace flush` or raise AGENTTRACE_SPOOL_MAX_MB."
                    )
                return False
            # Unique without drawing entropy (which a recording run captures as the agent's).
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence)}-{spans}s{SUFFIX}"
            try:
                self._ensure_directory()
                _write_atomically(self.directory / name, payload)
            except OSError as exc:
                if not self._error_warned:
                    self._error_warned = True
                    _warn(f"cannot write to the spool {self.root} ({exc}); dropping {spans} spans")
                return False
            self._used = (self._used[0] + len(payload), self._used[1])
            return True

    def _used_bytes(self) -> int:
        # Other processes share the directory, so rescan now and then rather than on every write
        # (a long outage spools thousands of batches).
        size, scanned_at = self._used
        now = time.monotonic()
        if now - scanned_at > _RESCAN_SECONDS or size + self.max_bytes // 10 > self.max_bytes:
            size, scanned_at = used_bytes(self.root), now
            self._used = (size, scanned_at)
        return size

    def _ensure_directory(self) -> None:
        if (self.directory / _TARGET).exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        target = {
            "api_url": self.target.api_url,
            "key_prefix": self.target.key_prefix,
            "key_sha256": self.target.key_sha256,
        }
        _write_atomically(self.directory / _TARGET, json.dumps(target).encode())

    # -- reading --------------------------------------------------------------------------------

    def pending(self) -> list[Entry]:
        """Spooled payloads, oldest first."""
        return entries(self.directory)

    @contextlib.contextmanager
    def claim(self, entry: Entry) -> Iterator[bytes | None]:
        """The payload, locked against other processes while the block runs; None if taken.

        Delete the entry inside the block once it is delivered.
        """
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    yield None  # another process is sending it right now
                    return
            # The previous holder may have delivered and unlinked it while we waited.
            try:
                current = os.stat(entry.path)
            except FileNotFoundError:
                yield None
                return
            if current.st_ino != os.fstat(fd).st_ino:
                yield None
                return
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
            yield data
        finally:
            os.close(fd)

    def adopt(self, foreign: list[Entry]) -> None:
        """Move entries of other buckets into this one (to send them with this key)."""
        self._ensure_directory()
        for entry in foreign:
            with contextlib.suppress(FileNotFoundError):
                os.replace(entry.path, self.directory / entry.path.name)

    def remove(self, entry: Entry) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)


def bucket_name(api_url: str, api_key: str) -> str:
    return hashlib.sha256(f"{api_url}\n{api_key}".encode()).hexdigest()[:24]


def entries(directory: Path) -> list[Entry]:
    found = []
    try:
        scan = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    now = time.time()
    for item in scan:
        if item.name.startswith(_TMP_PREFIX):
            _remove_stale_temp(item, now)
            continue
        if not item.name.endswith(SUFFIX):
            continue
        try:
            size = item.stat().st_size
        except FileNotFoundError:
            continue
        found.append(Entry(Path(item.path), _span_count(item.name), size))
    found.sort(key=lambda e: e.path.name)
    return found


def buckets(root: str | os.PathLike[str]) -> list[tuple[Target, Path, list[Entry]]]:
    """Every non-empty bucket of a spool directory, with where its payloads belong."""
    out = []
    try:
        scan = sorted(os.scandir(root), key=lambda d: d.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    for item in scan:
        if not item.is_dir():
            continue
        found = entries(Path(item.path))
        if not found:
            continue
        try:
            meta = json.loads((Path(item.path) / _TARGET).read_text(encoding="utf-8"))
            target = Target(meta["api_url"], meta["key_prefix"], meta["key_sha256"])
        except (OSError, ValueError, KeyError):
            target = Target("?", "?", "")
        out.append((target, Path(item.path), found))
    return out


def used_bytes(root: Path) -> int:
    total = 0
    try:
        for bucket in os.scandir(root):
            if bucket.is_dir():
                for item in os.scandir(bucket.path):
                    with contextlib.suppress(OSError):
                        total += item.stat().st_size
    except OSError:
        return total  # missing or unreadable: the write that follows reports it
    return total


def _span_count(name: str) -> int:
    try:
        return int(name[: -len(SUFFIX)].rsplit("-", 1)[1].rstrip("s"))
    except (IndexError, ValueError):
        return 0


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_stale_temp(item: os.DirEntry[str], now: float) -> None:
    # A process killed mid-write leaves its temp file behind; the rename never happened.
    with contextlib.suppress(OSError):
        if now - item.stat().st_mtime > _STALE_TMP_SECONDS:
            os.unlink(item.path)


def _warn(message: str) -> None:
    print(f"agenttrace: {message}", file=sys.stderr, flush=True)
