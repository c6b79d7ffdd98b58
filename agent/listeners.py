"""The agent's listening sockets, bound before the TPM is touched, so a taken port or an unsafe
socket path is a startup error and nothing is served half-started.

* TCP (``HOST:PORT``): the external listener, and the internal one only when the operator opts in
  (every process that reaches the address could then have the CVM key sign).
* Unix (``unix:/PATH``, the internal listener's default): the socket's directory is the agent's own
  (created when absent; refused when it is a symbolic link, another user owns it, or it holds
  anything but the socket, so the agent never changes a shared directory such as ``/run``); it is
  set to ``0750`` and the socket is created ``0660``, both given ``--internal-group`` when set: whoever the image's compose wiring
  mounts the directory into, running with that group, may connect; nobody else in the CVM may. A
  socket left by an earlier run is removed only when nothing answers on it; a symbolic link or any
  other kind of file at the path is refused, never followed or removed. :meth:`UnixSocketListener.close`
  removes the socket when it is still the one this process bound.

Everything after the directory is opened happens relative to that open directory (``dir_fd`` and
``/proc/self/fd/N/NAME``), so the directory checked is the one the socket is created in.
"""

from __future__ import annotations

import errno
import os
import socket
import stat

from offchain.errors import PlatformError, Reason

from agent.config import SOCKET_DIRECTORY_MODE, SOCKET_MODE, Listen, UnixListen

_BACKLOG = 128
_PROBE_TIMEOUT_S = 1.0


def bind_tcp(listen: Listen) -> socket.socket:
    """A listening TCP socket, bound before uvicorn starts, so a taken port is a clear startup error."""
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    # proto=IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says so; without it keep-alive responses wait ~40 ms for delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listen.host, listen.port))
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise PlatformError(
            Reason.PLATFORM_UNAVAILABLE, f"cannot listen on {listen}: {exc.strerror or exc}", listener=str(listen)
        ) from None
    sock.set_inheritable(True)
    return sock


class UnixSocketListener:
    """A listening Unix socket the agent created (module docstring); :meth:`close` removes it."""

    def __init__(self, listen: UnixListen, sock: socket.socket, directory_fd: int, inode: tuple[int, int]) -> None:
        self.listen = listen
        self.socket = sock
        self._directory_fd: int | None = directory_fd
        self._inode = inode

    @classmethod
    def bind(cls, listen: UnixListen, group: int | None = None) -> UnixSocketListener:
        """Create the directory if needed, check it, clear a stale socket, bind and listen."""
        directory_fd = _open_directory(listen, group)
        try:
            name = listen.path.name
            _remove_stale(listen, directory_fd)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                previous = os.umask(0o777 & ~SOCKET_MODE)  # single-threaded start: the socket is born 0660
                try:
                    sock.bind(_in(directory_fd, name))
                finally:
                    os.umask(previous)
                if group is not None:
                    os.chown(name, -1, group, dir_fd=directory_fd, follow_symlinks=False)
                sock.listen(_BACKLOG)
                info = os.lstat(name, dir_fd=directory_fd)
            except OSError as exc:
                sock.close()
                raise _unavailable(listen, f"cannot listen on {listen.path}: {exc.strerror or exc}") from None
        except BaseException:
            os.close(directory_fd)
            raise
        return cls(listen, sock, directory_fd, (info.st_dev, info.st_ino))

    def close(self) -> None:
        """Stop listening and remove the socket if it is still the one bound here (idempotent)."""
        self.socket.close()
        if self._directory_fd is None:
            return
        fd, self._directory_fd = self._directory_fd, None
        try:
            info = os.lstat(self.listen.path.name, dir_fd=fd)
            if (info.st_dev, info.st_ino) == self._inode:
                os.unlink(self.listen.path.name, dir_fd=fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def _in(directory_fd: int, name: str) -> str:
    """The path of ``name`` inside the open directory, as bind(2) and connect(2) take it."""
    return f"/proc/self/fd/{directory_fd}/{name}"


def _unavailable(listen: UnixListen, detail: str) -> PlatformError:
    return PlatformError(Reason.PLATFORM_UNAVAILABLE, detail, listener=str(listen))


def _open_directory(listen: UnixListen, group: int | None) -> int:
    directory = listen.path.parent
    try:
        os.mkdir(directory, SOCKET_DIRECTORY_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        raise _unavailable(listen, f"cannot create {directory}: {exc.strerror or exc}") from None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise _unavailable(listen, f"cannot open {directory}: {exc.strerror or exc}") from None
        if directory.is_symlink():  # O_NOFOLLOW | O_DIRECTORY: ELOOP or ENOTDIR, by kernel version
            raise PlatformError(
                Reason.AGENT_SOCKET_SYMLINK, f"{directory} is a symbolic link; the socket's directory must be real",
                path=str(directory),
            ) from None
        raise PlatformError(
            Reason.AGENT_SOCKET_DIRECTORY_UNSAFE, f"{directory} is not a directory", path=str(directory)
        ) from None
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise PlatformError(
                Reason.AGENT_SOCKET_DIRECTORY_UNSAFE,
                f"{directory} belongs to uid {owner}, not to the agent (uid {os.geteuid()}): its owner could "
                "replace the socket",
                path=str(directory),
            )
        others = sorted(set(os.listdir(fd)) - {listen.path.name})
        if others:
            raise PlatformError(
                Reason.AGENT_SOCKET_DIRECTORY_UNSAFE,
                f"{directory} holds more than the socket (e.g. {others[0]!r}): give the socket a directory of "
                "its own",
                path=str(directory),
            )
        try:
            os.fchmod(fd, SOCKET_DIRECTORY_MODE)
            if group is not None:
                os.fchown(fd, -1, group)
        except OSError as exc:
            raise _unavailable(listen, f"cannot set the owner or mode of {directory}: {exc.strerror or exc}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_stale(listen: UnixListen, directory_fd: int) -> None:
    """Remove a socket an earlier run left behind; refuse anything else found at the path."""
    name = listen.path.name
    try:
        mode = os.lstat(name, dir_fd=directory_fd).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise PlatformError(
            Reason.AGENT_SOCKET_SYMLINK, f"{listen.path} is a symbolic link; it is neither followed nor removed",
            path=str(listen.path),
        )
    if not stat.S_ISSOCK(mode):
        raise PlatformError(
            Reason.AGENT_SOCKET_NOT_A_SOCKET, f"{listen.path} exists and is not a socket; it is left alone",
            path=str(listen.path),
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_PROBE_TIMEOUT_S)
        try:
            probe.connect(_in(directory_fd, name))
        except ConnectionRefusedError:
            os.unlink(name, dir_fd=directory_fd)  # nobody listens: a stale socket from an earlier run
            return
        except OSError as exc:
            raise _unavailable(listen, f"cannot probe {listen.path}: {exc.strerror or exc}") from None
    raise _unavailable(listen, f"another process already listens on {listen.path}")
