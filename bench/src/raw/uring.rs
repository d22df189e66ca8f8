//! Raw members read through io_uring (`fanout --uring`): the load tool's
//! side of a delivery without a system call or a task of its own.
//!
//! Read the usual way, each delivery costs the tool an `epoll` event, a
//! task woken and polled, and a `read` system call: at 5,000 × 20 (100,000
//! deliveries a second) that took the whole of the tool's core, so the
//! tool's own queue set the tail it reported. Here a reader thread owns a
//! ring with one multishot `recv` per member; the kernel copies each
//! member's data into a buffer taken from a ring of provided buffers and
//! posts a completion, and one `io_uring_enter` reaps every delivery that
//! came since the last. The ring defers that copy to the reader's own
//! enter (`DEFER_TASKRUN`), so the server's core, which runs the receive
//! side of loopback TCP, only queues it.
//!
//! Linux 6.1 or later: [`check`] says why not before the run starts.

use std::alloc::{self, Layout};
use std::io::{self, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, EnterFlags, IoUring};

use super::frame::{masked, OP_PONG};
use super::{Inbox, RawMember};

/// Bytes in one provided buffer: a recv takes at most this much.
const BUFFER: usize = 2048;
/// Provided buffers in a ring (a power of two, at most 32,768): every
/// completion holds one until it is parsed, and a burst of one message to
/// 10,000 members is 10,000 completions.
const BUFFERS: u16 = 16_384;
/// The buffers' group id.
const GROUP: u16 = 0;
/// Submissions queued before an enter (the members' first `recv`s).
const SUBMISSIONS: u32 = 1024;
/// Completions the ring holds between two reaps.
const COMPLETIONS: u32 = 32_768;
/// How long a reader that does not poll sleeps at most before it looks at
/// its stop flag again.
const NAP: Timespec = Timespec::new().nsec(20_000_000);

/// A member as a reader thread holds it.
#[derive(Debug)]
struct Reading {
    stream: TcpStream,
    inbox: Inbox,
    /// Its data still counts: not closed by the server, no bad frame.
    open: bool,
}

impl Reading {
    fn of(member: RawMember) -> io::Result<Self> {
        Ok(Self {
            stream: member.stream.into_std()?,
            inbox: member.inbox,
            open: true,
        })
    }

    /// Parses `data`, which arrived for this member, and answers a ping.
    fn arrived(&mut self, data: &[u8], on_text: &mut impl FnMut(&[u8])) {
        self.open = matches!(self.inbox.take(data, on_text), Ok(true));
        if let Some(payload) = self.inbox.pong.take() {
            // A pong is a few bytes on a socket that is only read from:
            // the socket takes it at once, or the member is already lost.
            let _ = (&self.stream).write_all(&masked(OP_PONG, &payload));
        }
    }
}

/// Whether this system can read through io_uring as [`read_until`] does
/// (a ring set up and dropped on the calling thread).
pub fn check() -> io::Result<()> {
    Ring::new().map(drop)
}

/// Reads `members` until `stop` is set, calling `on_text(i, frame)` for
/// every text frame of `members[i]`, and gives them back. `poll`: never
/// sleep between reaps (take the whole core, so that nothing has to wake
/// this thread); otherwise wait in the kernel for the next delivery. Runs
/// on the calling thread, which must be inside the tokio runtime (the
/// members' sockets go back to it at the end).
pub fn read_until(
    members: Vec<RawMember>,
    stop: &AtomicBool,
    poll: bool,
    mut on_text: impl FnMut(usize, &[u8]),
) -> io::Result<Vec<RawMember>> {
    let mut readings = members
        .into_iter()
        .map(Reading::of)
        .collect::<io::Result<Vec<_>>>()?;
    // Frames that arrived with the join's reply.
    for (i, reading) in readings.iter_mut().enumerate() {
        let early = std::mem::take(&mut reading.inbox.partial);
        if !early.is_empty() {
            reading.arrived(&early, &mut |text| on_text(i, text));
        }
    }
    let mut ring = Ring::new()?;
    let mut unarmed: Vec<usize> = (0..readings.len()).collect();
    while !stop.load(Ordering::Relaxed) {
        ring.arm(&mut unarmed, &readings)?;
        ring.enter(poll)?;
        ring.reap(|i, data| {
            let Some(reading) = readings.get_mut(i) else {
                return false;
            };
            match data {
                Some(data) if reading.open => reading.arrived(data, &mut |text| on_text(i, text)),
                Some(_) => {}
                None => reading.open = false,
            }
            reading.open
        });
        unarmed.append(&mut ring.ended);
    }
    // The ring goes first: no recv is left to write into a buffer or to
    // hold a socket.
    drop(ring);
    readings
        .into_iter()
        .map(|reading| {
            Ok(RawMember {
                stream: tokio::net::TcpStream::from_std(reading.stream)?,
                inbox: reading.inbox,
            })
        })
        .collect()
}

/// A reader's ring, its provided buffers, and the members whose multishot
/// `recv` ended and has to be armed again.
struct Ring {
    uring: IoUring,
    buffers: Buffers,
    ended: Vec<usize>,
}

impl Ring {
    fn new() -> io::Result<Self> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(COMPLETIONS)
            .build(SUBMISSIONS)?;
        let buffers = Buffers::new()?;
        // SAFETY: the entries and the buffers they lend live in `buffers`,
        // which outlives the registration: `uring` is declared first in
        // `Ring`, so it is dropped, and the registration with it, first.
        #[allow(unsafe_code)]
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                buffers.ring as u64,
                BUFFERS,
                GROUP,
                0,
            )?;
        }
        Ok(Self {
            uring,
            buffers,
            ended: Vec::new(),
        })
    }

    /// Queues a multishot `recv` for each of `members` (indexes into
    /// `readings`) that is still open, entering the kernel whenever the
    /// submission queue is full.
    fn arm(&mut self, members: &mut Vec<usize>, readings: &[Reading]) -> io::Result<()> {
        for i in members.drain(..) {
            let Some(reading) = readings.get(i).filter(|r| r.open) else {
                continue;
            };
            let recv = opcode::RecvMulti::new(Fd(reading.stream.as_raw_fd()), GROUP)
                .build()
                .user_data(i as u64);
            loop {
                // SAFETY: the recv names no memory of its own (its data
                // goes to the provided buffers, which outlive the ring),
                // and its socket is held by `readings` until the ring is
                // dropped.
                #[allow(unsafe_code)]
                let pushed = unsafe { self.uring.submission().push(&recv) };
                if pushed.is_ok() {
                    break;
                }
                // The queue is full: hand it to the kernel first.
                self.uring.submit()?;
            }
        }
        Ok(())
    }

    /// Submits what is queued and runs the deliveries that came (the
    /// kernel copies them into buffers now, on this thread); with `poll`
    /// false, waits up to [`NAP`] for the first.
    fn enter(&mut self, poll: bool) -> io::Result<()> {
        let result = if poll {
            let queued = self.uring.submission().len() as u32;
            // SAFETY: no argument is passed; the flag only asks the kernel
            // to run this ring's deferred work and post its completions.
            #[allow(unsafe_code)]
            unsafe {
                self.uring.submitter().enter::<libc::sigset_t>(
                    queued,
                    0,
                    EnterFlags::GETEVENTS.bits(),
                    None,
                )
            }
        } else {
            self.uring
                .submitter()
                .submit_with_args(1, &SubmitArgs::new().timespec(&NAP))
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Hands each completion to `on_recv(member, data)` (`None`: the
    /// connection closed or failed), which says whether the member still
    /// reads, and gives its buffer back; members whose `recv` ended while
    /// they still read go to `ended`.
    fn reap(&mut self, mut on_recv: impl FnMut(usize, Option<&[u8]>) -> bool) {
        let mut returned = 0;
        for cqe in self.uring.completion() {
            let member = cqe.user_data() as usize;
            let result = cqe.result();
            let buffer = cqueue::buffer_select(cqe.flags());
            let reads = match (result, buffer) {
                (n, Some(id)) if n > 0 => {
                    let reads = on_recv(member, Some(self.buffers.data(id, n as usize)));
                    self.buffers.give_back(id, returned);
                    returned += 1;
                    reads
                }
                // Out of buffers for a moment: the recv ended, the member
                // did not.
                (n, _) if n == -libc::ENOBUFS => true,
                _ => on_recv(member, None),
            };
            if reads && !cqueue::more(cqe.flags()) {
                self.ended.push(member);
            }
        }
        self.buffers.publish(returned);
    }
}

/// The provided buffers and the ring of entries that lends them to the
/// kernel.
struct Buffers {
    /// `BUFFERS` entries, page-aligned, as the kernel wants them.
    ring: *mut BufRingEntry,
    /// `BUFFERS` buffers of `BUFFER` bytes.
    data: Box<[u8]>,
    /// Where they start, as the kernel writes to them (taken once, from a
    /// mutable borrow).
    base: u64,
    /// Entries published so far (the ring's tail).
    tail: u16,
}

impl Buffers {
    fn layout() -> Layout {
        // 16-byte entries, 32,768 at most: always a valid layout.
        Layout::from_size_align(usize::from(BUFFERS) * size_of::<BufRingEntry>(), 4096)
            .unwrap_or(Layout::new::<BufRingEntry>())
    }

    fn new() -> io::Result<Self> {
        // SAFETY: the layout has a non-zero size.
        #[allow(unsafe_code)]
        let ring = unsafe { alloc::alloc_zeroed(Self::layout()) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut data = vec![0; usize::from(BUFFERS) * BUFFER].into_boxed_slice();
        let base = data.as_mut_ptr() as u64;
        let mut buffers = Self {
            ring,
            data,
            base,
            tail: 0,
        };
        for id in 0..BUFFERS {
            buffers.give_back(id, id);
        }
        buffers.publish(BUFFERS);
        Ok(buffers)
    }

    /// The first `len` bytes of buffer `id`.
    fn data(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * BUFFER;
        &self.data[start..start + len.min(BUFFER)]
    }

    /// Writes buffer `id` into the entry `offset` places past the tail (not
    /// yet the kernel's: see [`Buffers::publish`]).
    fn give_back(&mut self, id: u16, offset: u16) {
        let slot = usize::from(self.tail.wrapping_add(offset) & (BUFFERS - 1));
        let addr = self.base + u64::from(id) * BUFFER as u64;
        // SAFETY: `slot` < BUFFERS, inside the allocation; the kernel reads
        // entries only up to the tail, which has not moved over this one.
        #[allow(unsafe_code)]
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(addr);
        entry.set_len(BUFFER as u32);
        entry.set_bid(id);
    }

    /// Lends the kernel the `count` entries written past the tail.
    fn publish(&mut self, count: u16) {
        if count == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(count);
        // SAFETY: the tail is the first entry's last two bytes, shared
        // with the kernel, which reads it atomically.
        #[allow(unsafe_code)]
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring that lent
        // the entries to the kernel is gone (`Ring` drops `uring` first).
        #[allow(unsafe_code)]
        unsafe {
            alloc::dealloc(self.ring.cast(), Self::layout())
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use mobile_bridge::client::{Client, ClientConfig};
    use tokio::net::TcpListener;

    use super::*;
    use crate::floor::{serve, SESSION};
    use crate::raw::{chat_of, Target};

    /// Three raw members on the floor server, read by one ring (sleeping
    /// or polling) while an SDK client sends: each sees every message once
    /// and in order, and comes back able to close.
    async fn every_message_reaches_every_member(poll: bool) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener));
        let target = Target::of_base(&base).await.unwrap();
        let mut members = Vec::new();
        for _ in 0..3 {
            let mut member = RawMember::connect(&target, None, "x").await.unwrap();
            member.join(SESSION).await.unwrap();
            members.push(member);
        }
        let seen = Arc::new(Mutex::new(vec![Vec::new(); 3]));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                read_until(members, &stop, poll, |i, text| {
                    if let Some(chat) = chat_of(text) {
                        seen.lock().unwrap()[i].push(chat.seq);
                    }
                })
            })
        };

        let ws_url = format!("{}/ws", base.replacen("http", "ws", 1));
        let (sender, _events) = Client::connect(ClientConfig::new(ws_url, "x"))
            .await
            .unwrap();
        sender.join(SESSION).await.unwrap();
        // Long enough that some recvs carry several frames, and a frame
        // now and then is cut between two buffers.
        let text = "t=1 ".repeat(100);
        for _ in 0..200 {
            sender.send_chat(SESSION, text.clone()).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().iter().any(|s| s.len() < 200) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let members = reader.await.unwrap().unwrap();
        let expected: Vec<u64> = (1..=200).collect();
        for (i, seqs) in seen.lock().unwrap().iter().enumerate() {
            assert_eq!(seqs, &expected, "member {i}");
        }
        assert_eq!(members.len(), 3);
        for member in members {
            member.close().await;
        }
        sender.close().await;
    }

    #[tokio::test]
    async fn a_sleeping_ring_reads_every_message() {
        every_message_reaches_every_member(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_polling_ring_reads_every_message() {
        every_message_reaches_every_member(true).await;
    }
}
