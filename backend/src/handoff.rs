//! Upgrading one machine without refusing a connection (no cluster needed).
//!
//! With `SIMMER_REUSE_PORT=true`, every `simmer` binds its port with
//! `SO_REUSEPORT` and holds an exclusive lock on `simmer.lock` in its data
//! directory for as long as it runs. A new process started beside a running
//! one:
//!
//! 1. binds the same port: from then on the kernel queues new connections
//!    on its socket too (they wait in its backlog; nobody is refused);
//! 2. finds the lock taken, reads the holder's pid from it and sends it
//!    `SIGUSR2`: the old process drains at once (its listener closes, its
//!    clients are told to reconnect, its writes finish, it exits);
//! 3. waits for the lock (the old process is gone), then opens the database,
//!    restores the live sessions and starts accepting.
//!
//! A connection the kernel had already queued on the old socket when it
//! closed is reset, unless `net.ipv4.tcp_migrate_req=1` (Linux 5.14+) moves
//! it to the new socket: docs/deploy.md sets it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Pending connections the kernel keeps per listening socket (capped by
/// `net.core.somaxconn`): during a hand-off they wait here.
const BACKLOG: i32 = 4096;

/// Binds the listening socket, shared with other processes when
/// `reuse_port` is set.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // What the standard library does too on Unix: rebinding a port with
    // sockets in TIME_WAIT is fine.
    #[cfg(unix)]
    {
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
    }
    #[cfg(not(unix))]
    if reuse_port {
        return Err(std::io::Error::other("SIMMER_REUSE_PORT needs Linux"));
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A second handle on the listening socket, to shut the door on new
/// connections while the server goes on serving the ones it has (a drain:
/// actix's own stop would also cut every idle keep-alive connection at once,
/// while a proxy may be sending a request on it).
#[derive(Debug)]
pub struct Entrance {
    socket: socket2::Socket,
}

impl Entrance {
    /// The entrance of `listener` (which the server takes).
    pub fn of(listener: &TcpListener) -> std::io::Result<Self> {
        Ok(Self {
            socket: listener.try_clone()?.into(),
        })
    }

    /// From now on connecting is refused, so a proxy tries the next node at
    /// once (safe for any request: nothing was sent). A connection the
    /// kernel had queued but the server not yet accepted is reset, or moved
    /// to a sibling `SO_REUSEPORT` socket with `tcp_migrate_req`. Linux stops
    /// listening on `shutdown`; elsewhere the listener stays open until the
    /// server stops.
    pub fn close(&self) {
        if let Err(e) = self.socket.shutdown(std::net::Shutdown::Read) {
            tracing::warn!(error.message = %e, "cannot close the listening socket early");
        }
    }
}

/// This process's hold on its data directory; released when it exits.
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

/// Takes the data directory's lock, asking the process that holds it to hand
/// over (and waiting up to `wait` for it to exit) first.
pub async fn take_over(data_dir: &Path, wait: Duration) -> anyhow::Result<NodeLock> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("simmer.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            let pid: i32 = text
                .trim()
                .parse()
                .with_context(|| format!("{} names no process: {text:?}", path.display()))?;
            tracing::info!(
                pid,
                "another simmer serves from this data directory: asking it to hand over"
            );
            ask_to_hand_over(pid)?;
            let locked = tokio::task::spawn_blocking(move || file.lock().map(|()| file));
            file = tokio::time::timeout(wait, locked)
                .await
                .map_err(|_| {
                    anyhow::anyhow!("the running simmer (pid {pid}) did not stop within {wait:?}")
                })?
                .context("waiting for the running simmer to stop")?
                .with_context(|| format!("locking {}", path.display()))?;
            tracing::info!(pid, "the previous simmer is gone; taking over");
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    write!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(NodeLock { _file: file })
}

#[cfg(unix)]
fn ask_to_hand_over(pid: i32) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    kill(Pid::from_raw(pid), Signal::SIGUSR2)
        .with_context(|| format!("signalling the running simmer (pid {pid})"))
}

#[cfg(not(unix))]
fn ask_to_hand_over(pid: i32) -> anyhow::Result<()> {
    anyhow::bail!("another simmer (pid {pid}) holds the data directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sockets_share_a_port_only_when_asked() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind(addr, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(bind(addr, false).is_err(), "without SO_REUSEPORT: in use");
    }

    #[tokio::test]
    async fn the_lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = take_over(dir.path(), Duration::from_secs(1)).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("simmer.lock")).unwrap();
        assert_eq!(text, std::process::id().to_string());
        drop(lock);
        // Free again once dropped.
        take_over(dir.path(), Duration::from_secs(1)).await.unwrap();
    }
}
