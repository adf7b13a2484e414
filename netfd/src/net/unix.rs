use super::{dial, listen_on, socket_common, stream_io, Options};
use crate::netfd::NetFd;
use crate::sys::{self, SockAddr};
use std::io;
use std::path::{Path, PathBuf};

/// A Unix stream listening socket bound to a path.
pub struct UnixListener {
    fd: NetFd,
}

/// A Unix stream connection.
pub struct UnixStream {
    fd: NetFd,
}

socket_common!(UnixListener);
socket_common!(UnixStream);
stream_io!(UnixStream);

impl UnixListener {
    /// Listen on `path` (which must not exist) with the production protocol.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_with(path, Options::default())
    }

    pub fn bind_with(path: impl AsRef<Path>, opts: Options) -> io::Result<UnixListener> {
        let fd = listen_on(
            libc::AF_UNIX,
            &SockAddr::from_unix_path(path.as_ref())?,
            opts,
        )?;
        Ok(UnixListener { fd })
    }

    /// Wait for a connection. The new stream inherits this listener's options.
    pub fn accept(&self) -> io::Result<UnixStream> {
        let (fd, _) = self.fd.accept()?;
        Ok(UnixStream { fd })
    }

    /// The path this listener is bound to.
    pub fn local_path(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.fd.control(sys::getsockname)?.as_unix_path())
    }
}

impl UnixStream {
    /// Connect to the listener at `path` with the production protocol.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        UnixStream::connect_with(path, Options::default())
    }

    pub fn connect_with(path: impl AsRef<Path>, opts: Options) -> io::Result<UnixStream> {
        let fd = dial(
            libc::AF_UNIX,
            &SockAddr::from_unix_path(path.as_ref())?,
            opts,
        )?;
        Ok(UnixStream { fd })
    }

    /// The path of the peer, if it is bound to one.
    pub fn peer_path(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.fd.control(sys::getpeername)?.as_unix_path())
    }
}
