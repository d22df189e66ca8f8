//! Sealing packets for viewers and sending them in batches: per packet
//! and viewer, a bare RTP header (the viewer's SSRC and payload type, no
//! extensions) and AES-GCM into one datagram; per batch, one `sendmmsg`
//! per socket.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
use tokio::io::Interest;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::util::{Marshal, MarshalSize};

use super::peer::Peer;
use super::Inner;
use crate::media::lock;

/// Datagrams per `sendmmsg` call.
const BATCH: usize = 64;

/// Datagrams ready to go, each with the socket and address it goes by.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    datagrams: Vec<(usize, SocketAddr, Bytes)>,
    /// Scratch space for one packet in the clear.
    scratch: Vec<u8>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
}

/// 2^32 units of a second since 1900 (RTCP's NTP time).
fn ntp_now() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// `packet` as the edge sends it: the fields every viewer shares, no CSRCs,
/// no header extensions (the relay negotiates none).
pub(crate) fn bare(packet: &Packet) -> Packet {
    Packet {
        header: Header {
            version: 2,
            marker: packet.header.marker,
            payload_type: packet.header.payload_type,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc: packet.header.ssrc,
            ..Default::default()
        },
        payload: packet.payload.clone(),
    }
}

impl Peer {
    /// The payload type this viewer gets codec `mime` (with `fmtp`) as on
    /// leg `kind` (`None`: it cannot receive it).
    pub(crate) fn payload_type(&self, kind: usize, mime: &str, fmtp: &str) -> Option<u8> {
        let leg = if kind == 0 { &self.video } else { &self.audio };
        leg.as_ref()?.payload_type(mime, fmtp)
    }

    /// Seals `packet` for this viewer's leg `kind` (0 video, 1 audio) as
    /// payload type `pt` and adds it to `batch`; false if the viewer is
    /// not connected (or has no such leg).
    pub(crate) fn seal(&self, kind: usize, pt: u8, packet: &Packet, batch: &mut Batch) -> bool {
        let leg = if kind == 0 { &self.video } else { &self.audio };
        let (Some(leg), Some(path)) = (leg, self.path()) else {
            return false;
        };
        let header = Header {
            version: 2,
            marker: packet.header.marker,
            payload_type: pt,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc: leg.ssrc,
            ..Default::default()
        };
        let size = header.marshal_size();
        batch.scratch.clear();
        batch.scratch.resize(size, 0);
        if header.marshal_to(&mut batch.scratch).is_err() {
            return false;
        }
        batch.scratch.extend_from_slice(&packet.payload);
        let mut keyed = lock(&self.keyed);
        let Some(keyed) = keyed.as_mut() else {
            return false;
        };
        let Ok(sealed) = keyed.out.encrypt_rtp_with_header(&batch.scratch, &header) else {
            return false;
        };
        let sent = &mut keyed.sent[kind];
        sent.packets = sent.packets.wrapping_add(1);
        sent.octets = sent.octets.wrapping_add(packet.payload.len() as u32);
        sent.last_timestamp = packet.header.timestamp;
        sent.last_at = Some(Instant::now());
        batch.datagrams.push((path.socket, path.addr, sealed));
        true
    }

    /// A sender report per leg that has sent something, into `batch`.
    pub(crate) fn sender_reports(&self, batch: &mut Batch) {
        let Some(path) = self.path() else { return };
        let mut keyed = lock(&self.keyed);
        let Some(keyed) = keyed.as_mut() else { return };
        for (kind, leg) in [(0, &self.video), (1, &self.audio)] {
            let Some(leg) = leg else { continue };
            let sent = keyed.sent[kind];
            let Some(at) = sent.last_at else { continue };
            let clock = leg.codecs.first().map_or(90_000, |c| c.clock_rate);
            let since = at.elapsed().as_micros() as u64 * u64::from(clock) / 1_000_000;
            let report = SenderReport {
                ssrc: leg.ssrc,
                ntp_time: ntp_now(),
                rtp_time: sent.last_timestamp.wrapping_add(since as u32),
                packet_count: sent.packets,
                octet_count: sent.octets,
                ..Default::default()
            };
            let Ok(plain) = report.marshal() else {
                continue;
            };
            if let Ok(sealed) = keyed.out.encrypt_rtcp(&plain) {
                batch.datagrams.push((path.socket, path.addr, sealed));
            }
        }
    }
}

/// Sends what `batch` holds (and empties it). A datagram the kernel
/// refuses (an unreachable address) is skipped; a full socket buffer is
/// waited for.
pub(super) async fn flush(edge: &Inner, batch: &mut Batch) {
    let mut datagrams = std::mem::take(&mut batch.datagrams);
    for (n, socket) in edge.sockets.iter().enumerate() {
        let mine: Vec<&(usize, SocketAddr, Bytes)> =
            datagrams.iter().filter(|d| d.0 == n).collect();
        for chunk in mine.chunks(BATCH) {
            send_chunk(socket, chunk).await;
        }
    }
    datagrams.clear();
    batch.datagrams = datagrams;
}

async fn send_chunk(socket: &Arc<tokio::net::UdpSocket>, chunk: &[&(usize, SocketAddr, Bytes)]) {
    let slices: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|d| [IoSlice::new(&d.2)]).collect();
    let addrs: Vec<Option<SockaddrStorage>> = chunk
        .iter()
        .map(|d| Some(SockaddrStorage::from(d.1)))
        .collect();
    let mut start = 0;
    while start < chunk.len() {
        let sent = socket.try_io(Interest::WRITABLE, || {
            // Not kept across the wait below: it holds raw pointers.
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(chunk.len() - start, None);
            sendmmsg(
                socket.as_raw_fd(),
                &mut headers,
                &slices[start..],
                &addrs[start..],
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|results| results.count())
            .map_err(std::io::Error::from)
        });
        match sent {
            Ok(0) => start += 1,
            Ok(n) => start += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            // The first datagram was refused: skip it, send the rest.
            Err(_) => start += 1,
        }
    }
}
