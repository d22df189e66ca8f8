//! Many sockets' writes in one system call: how the gateway's fan-out
//! writes a chat message to every caught-up member.
//!
//! Each member's write is a `sendmsg` of its queued frames. Made one call
//! at a time, each pays for entering and leaving the kernel and looking its
//! socket up: on the eighth machine (retpolines, SRSO's return thunks) a
//! probe writing 1,000 loopback sockets spent 5.5–5.8 µs a socket one call
//! at a time and 4.3–4.8 µs in rings of 64 to 1,024. Here the writes of up
//! to 256 sockets (16 in a fan-out's first ring, so that the clock of its
//! first write stays near it) go to the kernel in one `io_uring_enter`,
//! each a `send` of the fan-out's one buffer (or a `sendmsg` of a longer
//! queue) with `MSG_DONTWAIT`: it is done at once or refused
//! with `EAGAIN`, never parked, so every write has completed when the call
//! returns and no buffer is the kernel's past it. The queues stay borrowed
//! until then. The server's CPU at 5,000 × 20 fell from 0.68–0.71 to
//! 0.55–0.61 of a core (docs/benchmarks.md, "Many sockets' writes in one
//! system call").
//!
//! Where io_uring is not there (another system, an old kernel, a seccomp
//! profile that forbids it) or is turned off ([`use_io_uring`]), each
//! socket gets its own `sendmsg`, as before. A socket that does not take
//! all its frames, or fails, is left to its own loop either way: it is
//! woken, writes the rest as the socket takes it and meets the error
//! itself.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Outlet;

static IO_URING: AtomicBool = AtomicBool::new(true);

/// Whether this process writes fan-outs through io_uring where the system
/// has it (the default) or one `sendmsg` per socket. Set before serving:
/// each worker thread decides at its first fan-out.
pub fn use_io_uring(on: bool) {
    IO_URING.store(on, Ordering::Relaxed);
}

/// Writes what each outlet has queued, as far as its socket takes it now,
/// and wakes the loop of each that did not take it all or failed; `first`
/// is called once the first sockets have been written to.
pub fn flush<'a>(outlets: impl IntoIterator<Item = &'a Outlet>, first: impl FnOnce()) {
    let mut outlets = outlets.into_iter().peekable();
    let mut first = Some(first);
    #[cfg(target_os = "linux")]
    {
        let rung = ring::RING.try_with(|slot| {
            let mut slot = slot.borrow_mut();
            let ring = slot.get_or_insert_with(ring::Ring::new);
            while outlets.peek().is_some() {
                let Some(uring) = ring.as_mut() else {
                    return false;
                };
                // The first ring is short, so that the clock of the first
                // member's write stops near it.
                let size = if first.is_some() {
                    ring::FIRST_RING
                } else {
                    ring::RING_ENTRIES
                };
                if !uring.write(&mut outlets, size) {
                    // The ring failed: this thread writes one socket at a
                    // time from now on.
                    *ring = None;
                    return false;
                }
                if let Some(first) = first.take() {
                    first();
                }
            }
            true
        });
        if rung == Ok(true) {
            return;
        }
    }
    for outlet in outlets {
        one(outlet);
        if let Some(first) = first.take() {
            first();
        }
    }
}

/// One socket's `sendmsg`, its loop woken for what it leaves.
fn one(outlet: &Outlet) {
    if outlet.flush_now().is_err() || outlet.has_backlog() {
        outlet.wake_owner();
    }
}

#[cfg(target_os = "linux")]
mod ring {
    use std::cell::RefCell;

    use io_uring::{opcode, types, IoUring};

    use super::{one, Outlet, IO_URING};
    use crate::websocket::conn::WRITE_BATCH;

    /// Writes handed to the kernel in one call, at most. 64 already saved
    /// nearly all there was to save (the probe: 4.6–4.7 µs a socket at 64,
    /// 4.3–4.8 at 256 and 1,024); a bigger ring would only hold the queues
    /// longer. Its `iovec`s take 256 KiB a worker thread.
    pub(super) const RING_ENTRIES: usize = 256;

    /// The first ring of a fan-out: the "published → first member's
    /// socket" clock stops when it returns.
    pub(super) const FIRST_RING: usize = 16;

    /// Every write's flags: done at once or refused, never parked.
    const FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

    /// What a thread without a ring says, once.
    const ONE_AT_A_TIME: &str = "fan-out writes one sendmsg per socket";

    thread_local! {
        /// This worker's ring: `None` until its first fan-out, then
        /// `Some(None)` where it has none.
        pub(super) static RING: RefCell<Option<Option<Ring>>> = const { RefCell::new(None) };
    }

    /// A worker's io_uring and the `msghdr`s and `iovec`s its writes point
    /// to while they are the kernel's.
    pub(super) struct Ring {
        uring: IoUring,
        headers: Vec<libc::msghdr>,
        slices: Vec<[libc::iovec; WRITE_BATCH]>,
    }

    impl Ring {
        /// This thread's ring, if it is to have one (said once a thread).
        pub(super) fn new() -> Option<Self> {
            if !IO_URING.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::info!(reason = "SIMMER_WS_IO_URING=false", "{ONE_AT_A_TIME}");
                return None;
            }
            match IoUring::new(RING_ENTRIES as u32) {
                Ok(uring) => {
                    tracing::info!(ring = RING_ENTRIES, "fan-out writes through io_uring");
                    Some(Self {
                        uring,
                        headers: vec![empty_header(); RING_ENTRIES],
                        slices: vec![[empty_slice(); WRITE_BATCH]; RING_ENTRIES],
                    })
                }
                Err(e) => {
                    tracing::warn!(reason = "io_uring is not available", error = %e, "{ONE_AT_A_TIME}");
                    None
                }
            }
        }

        /// Writes the next `size` outlets' queues (at most [`RING_ENTRIES`])
        /// in one call;
        /// `false` if the ring failed (the outlets taken are then written
        /// one at a time).
        pub(super) fn write<'a>(
            &mut self,
            outlets: &mut impl Iterator<Item = &'a Outlet>,
            size: usize,
        ) -> bool {
            let size = size.min(RING_ENTRIES);
            let mut held = Vec::with_capacity(size);
            for outlet in outlets.by_ref().take(size) {
                let at = held.len();
                let Some((queue, count)) = outlet.queued(&mut self.slices[at]) else {
                    continue;
                };
                let fd = types::Fd(outlet.fd());
                let send = if count == 1 {
                    // One buffer (a fan-out's frame, as a rule): a `send`,
                    // which spares the kernel copying in a `msghdr` and
                    // its `iovec`s.
                    let only = self.slices[at][0];
                    // More than 4 GiB is not queued; were it, the rest goes
                    // as after any partial write.
                    let len = u32::try_from(only.iov_len).unwrap_or(u32::MAX);
                    opcode::Send::new(fd, only.iov_base.cast(), len)
                        .flags(FLAGS)
                        .build()
                } else {
                    let header = &mut self.headers[at];
                    header.msg_iov = self.slices[at].as_mut_ptr();
                    header.msg_iovlen = count;
                    opcode::SendMsg::new(fd, header).flags(FLAGS as u32).build()
                }
                .user_data(at as u64);
                // SAFETY: the entry points into `outlet`'s queue, directly
                // or through `self.headers[at]` and `self.slices[at]`: all
                // of them stay put and alive (the queue borrowed through
                // `held`) until every entry pushed here has completed
                // below. The ring has room: it holds RING_ENTRIES and each
                // call empties it.
                #[allow(unsafe_code)]
                let pushed = unsafe { self.uring.submission().push(&send) };
                if pushed.is_err() {
                    drop(queue);
                    one(outlet);
                    continue;
                }
                held.push((outlet, queue));
            }
            let mut results = vec![0i32; held.len()];
            let mut done = 0;
            let mut submitted = false;
            while done < held.len() {
                match self.uring.submit_and_wait(held.len() - done) {
                    Ok(_) => submitted = true,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if !submitted => {
                        // The kernel took none of the entries (it says how
                        // many it took when it took any), and dropping the
                        // ring drops them: nothing points at the queues.
                        tracing::warn!(reason = "io_uring failed", error = %e, "{ONE_AT_A_TIME}");
                        for (outlet, queue) in held {
                            drop(queue);
                            one(outlet);
                        }
                        return false;
                    }
                    // Taken and not all completed: a `MSG_DONTWAIT` write
                    // completes as the kernel takes it, so this is not
                    // seen; if it were, the queues must stay put until it
                    // completes.
                    Err(_) => {}
                }
                for completion in self.uring.completion() {
                    results[completion.user_data() as usize] = completion.result();
                    done += 1;
                }
            }
            for ((outlet, queue), result) in held.into_iter().zip(results) {
                drop(queue);
                if let Ok(written) = usize::try_from(result) {
                    outlet.wrote(written);
                }
                // What is left (a burst longer than one write, or what the
                // socket refused or failed on) goes as one at a time would
                // send it: written on, or left to the woken loop.
                if outlet.has_backlog() {
                    one(outlet);
                }
            }
            true
        }
    }

    fn empty_header() -> libc::msghdr {
        // SAFETY: `msghdr` is plain data; all zeroes is a message with no
        // name, no slices and no control data.
        #[allow(unsafe_code)]
        unsafe {
            std::mem::zeroed()
        }
    }

    fn empty_slice() -> libc::iovec {
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::{Bytes, BytesMut};
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::websocket::conn::WRITE_BATCH;
    use crate::websocket::{Limits, LocalFrame, Message, WebSocket, WsError};

    const LIMITS: Limits = Limits {
        max_message: 1024,
        max_backlog: 1024 * 1024,
        send_buffer: 0,
    };

    /// How this thread's fan-outs write.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Path {
        Ring,
        OneByOne,
    }

    fn take(path: Path) {
        ring::RING.with(|slot| {
            *slot.borrow_mut() = match path {
                Path::Ring => Some(ring::Ring::new()),
                Path::OneByOne => Some(None),
            };
            if path == Path::Ring {
                assert!(
                    matches!(*slot.borrow(), Some(Some(_))),
                    "the machine that runs the tests has io_uring"
                );
            }
        });
    }

    /// `n` server-side WebSockets and their clients' ends.
    async fn pairs(n: usize, limits: Limits) -> Vec<(WebSocket, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            pairs.push((WebSocket::new(server, BytesMut::new(), limits), client));
        }
        pairs
    }

    /// The payload of the next server text frame.
    async fn text(client: &mut TcpStream) -> Vec<u8> {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 0x81);
        let len = match head[1] {
            126 => usize::from(client.read_u16().await.unwrap()),
            127 => usize::try_from(client.read_u64().await.unwrap()).unwrap(),
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).await.unwrap();
        payload
    }

    #[tokio::test]
    async fn every_socket_gets_its_frames_in_order_more_than_a_ring_at_a_time() {
        for path in [Path::Ring, Path::OneByOne] {
            take(path);
            let mut pairs = pairs(ring::RING_ENTRIES * 2 + 3, LIMITS).await;
            for (n, (ws, _)) in pairs.iter_mut().enumerate() {
                ws.queue_text(Bytes::from(format!("{n}:a"))).unwrap();
                ws.queue_text(Bytes::from(format!("{n}:b"))).unwrap();
            }
            let mut firsts = 0;
            flush(pairs.iter().map(|(ws, _)| &**ws.outlet()), || firsts += 1);
            assert_eq!(firsts, 1, "{path:?}");
            for (n, (ws, client)) in pairs.iter_mut().enumerate() {
                assert!(!ws.has_backlog(), "{path:?}: the socket took it all");
                assert_eq!(text(client).await, format!("{n}:a").into_bytes());
                assert_eq!(text(client).await, format!("{n}:b").into_bytes());
            }
            if path == Path::Ring {
                ring::RING.with(|slot| {
                    assert!(matches!(*slot.borrow(), Some(Some(_))), "the ring held");
                });
            }
        }
    }

    #[tokio::test]
    async fn a_burst_longer_than_one_write_goes_out_whole() {
        for path in [Path::Ring, Path::OneByOne] {
            take(path);
            let (ws, mut client) = pairs(1, LIMITS).await.pop().unwrap();
            let frames = WRITE_BATCH * 3 / 2;
            for n in 0..frames {
                ws.outlet().queue_text(Bytes::from(n.to_string())).unwrap();
            }
            flush([&**ws.outlet()], || {});
            assert!(!ws.has_backlog(), "{path:?}: written without its loop");
            for n in 0..frames {
                assert_eq!(text(&mut client).await, n.to_string().into_bytes());
            }
        }
    }

    #[tokio::test]
    async fn what_a_socket_does_not_take_is_written_by_its_loop_once_woken() {
        // A payload of its own, and one the fan-out shares between sockets.
        for (path, shared) in [Path::Ring, Path::OneByOne]
            .into_iter()
            .flat_map(|path| [(path, false), (path, true)])
        {
            take(path);
            // A small send buffer, so that the kernel takes only part.
            let limits = Limits {
                send_buffer: 16 * 1024,
                ..LIMITS
            };
            let (mut ws, mut client) = pairs(1, limits).await.pop().unwrap();
            let outlet = ws.outlet().clone();
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async move {
                    // The connection's loop, waiting for its client: it
                    // runs again only when woken.
                    let owner = tokio::task::spawn_local(async move { ws.recv().await });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    assert!(!owner.is_finished());
                    // More than the kernel takes at once, and past the
                    // high-water mark: its loop says when it is all written.
                    let big: Bytes = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
                    if shared {
                        outlet.queue_local(&LocalFrame::text(&big)).unwrap();
                    } else {
                        outlet.queue_text(big.clone()).unwrap();
                    }
                    flush([&*outlet], || {});
                    assert!(
                        outlet.has_backlog(),
                        "{path:?} {shared}: the kernel took only part"
                    );
                    let reader = tokio::spawn(async move { text(&mut client).await });
                    let drained = tokio::time::timeout(Duration::from_secs(10), owner)
                        .await
                        .expect("the loop was woken and wrote the rest")
                        .unwrap();
                    assert_eq!(drained.unwrap(), Message::Drained, "{path:?} {shared}");
                    assert_eq!(
                        reader.await.unwrap(),
                        big,
                        "{path:?} {shared}: every byte, once"
                    );
                })
                .await;
        }
    }

    #[tokio::test]
    async fn a_reset_socket_is_left_to_its_loop_and_the_others_are_written() {
        for path in [Path::Ring, Path::OneByOne] {
            take(path);
            let mut pairs = pairs(3, LIMITS).await;
            // The middle client goes away at once: its kernel answers the
            // next write with a reset.
            let (gone, client) = pairs.remove(1);
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(client);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let outlets = [pairs[0].0.outlet(), gone.outlet(), pairs[1].0.outlet()];
            for outlet in outlets {
                outlet.queue_text(Bytes::from_static(b"hello")).unwrap();
            }
            flush(outlets.iter().map(|outlet| &***outlet), || {});
            for (_, client) in &mut pairs {
                assert_eq!(text(client).await, b"hello", "{path:?}");
            }
            assert!(gone.has_backlog(), "{path:?}: nothing was taken");
            assert!(
                matches!(gone.outlet().flush_now(), Err(WsError::Gone(_))),
                "{path:?}: its loop meets the error"
            );
            if path == Path::Ring {
                ring::RING.with(|slot| {
                    assert!(matches!(*slot.borrow(), Some(Some(_))), "the ring held");
                });
            }
        }
    }
}
