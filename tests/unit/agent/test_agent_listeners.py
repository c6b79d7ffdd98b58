"""agent.listeners: the internal Unix socket is created with the agent's permissions, a stale one is
replaced, anything else at its path (a symbolic link, a file, a live socket, a shared or foreign
directory) is refused with a typed reason and left alone; and the TCP listener's own checks."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import Listen, UnixListen
from agent.listeners import UnixSocketListener, bind_tcp
from offchain.errors import CvmAttestError, Reason

#: A group and a user that are not the test's (nobody / nogroup on Debian).
OTHER_UID = 65534
OTHER_GID = 65534


@pytest.fixture
def base() -> Iterator[Path]:
    """A short directory that other users may traverse (pytest's tmp_path is 0700 and long)."""
    path = Path(tempfile.mkdtemp(prefix="cvm-sock-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _listen(base: Path) -> UnixListen:
    return UnixListen(base / "run" / "internal.sock")


def _refused(listen: UnixListen, group: int | None = None) -> Reason:
    with pytest.raises(CvmAttestError) as exc:
        UnixSocketListener.bind(listen, group)
    return exc.value.reason


def _connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def test_socket_and_directory_get_the_agents_permissions(base: Path) -> None:
    listen = _listen(base)
    listener = UnixSocketListener.bind(listen)
    try:
        directory, sock = os.lstat(listen.path.parent), os.lstat(listen.path)
        assert stat.S_ISDIR(directory.st_mode) and stat.S_IMODE(directory.st_mode) == 0o750
        assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o660
        assert directory.st_uid == sock.st_uid == os.geteuid()
        assert _connects(listen.path)
    finally:
        listener.close()
    assert not listen.path.exists() and listen.path.parent.is_dir()  # the directory stays (it is mounted)
    listener.close()  # idempotent


def test_an_existing_directory_is_narrowed_to_0750(base: Path) -> None:
    listen = _listen(base)
    listen.path.parent.mkdir(mode=0o777)
    os.chmod(listen.path.parent, 0o777)
    listener = UnixSocketListener.bind(listen)
    try:
        assert stat.S_IMODE(os.lstat(listen.path.parent).st_mode) == 0o750
    finally:
        listener.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another group needs root")
def test_the_group_is_given_to_directory_and_socket(base: Path) -> None:
    listen = _listen(base)
    listener = UnixSocketListener.bind(listen, OTHER_GID)
    try:
        assert os.lstat(listen.path.parent).st_gid == os.lstat(listen.path).st_gid == OTHER_GID
    finally:
        listener.close()


def _connect_as(path: Path, uid: int, gid: int, groups: list[int]) -> bool:
    """Whether a process running as ``uid:gid`` with ``groups`` can connect to ``path`` (a forked
    child: no executable needs to be reachable by that user)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status only
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(path))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="running a process as another user needs root")
def test_only_the_group_may_connect(base: Path) -> None:
    """The permissions work: a process of another user connects only when it has the socket's group."""
    listen = _listen(base)
    listener = UnixSocketListener.bind(listen, OTHER_GID)
    try:
        assert _connect_as(listen.path, OTHER_UID, OTHER_GID, [])
        assert not _connect_as(listen.path, OTHER_UID, 12345, [])  # neither owner nor group
        assert _connect_as(listen.path, OTHER_UID, 12345, [OTHER_GID])  # a supplementary group will do
    finally:
        listener.close()


def test_a_stale_socket_is_replaced(base: Path) -> None:
    listen = _listen(base)
    listen.path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(listen.path))
    stale.close()  # left behind, as after a crash: nobody listens
    assert stat.S_IMODE(os.lstat(listen.path).st_mode) != 0o660
    listener = UnixSocketListener.bind(listen)
    try:
        assert stat.S_IMODE(os.lstat(listen.path).st_mode) == 0o660 and _connects(listen.path)
    finally:
        listener.close()


def test_a_live_socket_is_not_taken_over(base: Path) -> None:
    listen = _listen(base)
    first = UnixSocketListener.bind(listen)
    try:
        inode = os.lstat(listen.path).st_ino
        assert _refused(listen) is Reason.PLATFORM_UNAVAILABLE
        assert os.lstat(listen.path).st_ino == inode and _connects(listen.path)
    finally:
        first.close()


def test_a_symlink_at_the_socket_path_is_neither_followed_nor_removed(base: Path) -> None:
    listen = _listen(base)
    listen.path.parent.mkdir()
    target = base / "target"
    target.write_bytes(b"precious")
    listen.path.symlink_to(target)
    assert _refused(listen) is Reason.AGENT_SOCKET_SYMLINK
    assert listen.path.is_symlink() and target.read_bytes() == b"precious"


def test_a_dangling_symlink_at_the_socket_path_is_refused(base: Path) -> None:
    listen = _listen(base)
    listen.path.parent.mkdir()
    listen.path.symlink_to(base / "elsewhere.sock")
    assert _refused(listen) is Reason.AGENT_SOCKET_SYMLINK
    assert not (base / "elsewhere.sock").exists()  # binding would have created the socket there


def test_a_symlinked_directory_is_refused(base: Path) -> None:
    listen = _listen(base)
    (base / "real").mkdir()
    listen.path.parent.symlink_to(base / "real")
    assert _refused(listen) is Reason.AGENT_SOCKET_SYMLINK
    assert list((base / "real").iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "directory", "fifo"])
def test_something_else_at_the_socket_path_is_left_alone(base: Path, kind: str) -> None:
    listen = _listen(base)
    listen.path.parent.mkdir()
    if kind == "file":
        listen.path.write_bytes(b"data")
    elif kind == "directory":
        listen.path.mkdir()
    else:
        os.mkfifo(listen.path)
    mode = os.lstat(listen.path).st_mode
    assert _refused(listen) is Reason.AGENT_SOCKET_NOT_A_SOCKET
    assert os.lstat(listen.path).st_mode == mode


def test_a_shared_directory_is_refused_and_unchanged(base: Path) -> None:
    """The agent chmods its socket's directory, so it must be the socket's alone (never /run)."""
    listen = _listen(base)
    listen.path.parent.mkdir(mode=0o755)
    (listen.path.parent / "other-service.pid").write_text("1\n")
    assert _refused(listen) is Reason.AGENT_SOCKET_DIRECTORY_UNSAFE
    assert stat.S_IMODE(os.lstat(listen.path.parent).st_mode) == 0o755


def test_a_file_as_the_directory_is_refused(base: Path) -> None:
    (base / "run").write_bytes(b"")
    assert _refused(_listen(base)) is Reason.AGENT_SOCKET_DIRECTORY_UNSAFE


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
def test_a_directory_of_another_user_is_refused(base: Path) -> None:
    listen = _listen(base)
    listen.path.parent.mkdir()
    os.chown(listen.path.parent, OTHER_UID, OTHER_GID)
    assert _refused(listen) is Reason.AGENT_SOCKET_DIRECTORY_UNSAFE
    assert not listen.path.exists()


def test_a_missing_parent_is_a_startup_error(base: Path) -> None:
    assert _refused(UnixListen(base / "no" / "such" / "internal.sock")) is Reason.PLATFORM_UNAVAILABLE


def test_close_leaves_a_socket_that_replaced_ours(base: Path) -> None:
    listen = _listen(base)
    listener = UnixSocketListener.bind(listen)
    listen.path.unlink()
    replacement = socket.socket(socket.AF_UNIX)
    replacement.bind(str(listen.path))
    try:
        listener.close()
        assert stat.S_ISSOCK(os.lstat(listen.path).st_mode)
    finally:
        replacement.close()


def test_tcp_listener_lets_asyncio_disable_nagle() -> None:
    """asyncio sets TCP_NODELAY on accepted connections only when the listener's proto is TCP;
    without it every keep-alive response waited ~40 ms for a delayed ACK (benchmarks/agent.py)."""
    sock = bind_tcp(Listen("127.0.0.1", 0))
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(CvmAttestError) as exc:
            bind_tcp(Listen("127.0.0.1", taken.getsockname()[1]))
    assert exc.value.reason is Reason.PLATFORM_UNAVAILABLE
