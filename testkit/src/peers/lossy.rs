//! A lossy network in front of a viewer, as a `webrtc` interceptor.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};

use crate::lock;

/// A lossy network in front of a viewer: every `every`-th video packet is
/// dropped before the viewer's stack sees it, and with `for_good` so are its
/// retransmissions. Clones share their counts (the test keeps one, the
/// viewer's connection the other).
#[derive(Debug, Clone)]
pub struct LossyLink {
    every: u64,
    for_good: bool,
    seen: Arc<AtomicU64>,
    dropped: Arc<Mutex<BTreeSet<u16>>>,
}

impl LossyLink {
    /// Drops every `every`-th video packet (and, with `for_good`, every
    /// retransmission of it). `every` of 0 counts as 1.
    pub fn new(every: u64, for_good: bool) -> Self {
        Self {
            every: every.max(1),
            for_good,
            seen: Arc::default(),
            dropped: Arc::default(),
        }
    }

    /// The sequence numbers dropped at least once.
    pub fn dropped(&self) -> usize {
        lock(&self.dropped).len()
    }
}

impl InterceptorBuilder for LossyLink {
    fn build(
        &self,
        _: &str,
    ) -> Result<Arc<dyn Interceptor + Send + Sync>, webrtc::interceptor::Error> {
        Ok(Arc::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl Interceptor for LossyLink {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        writer
    }

    async fn bind_local_stream(
        &self,
        _: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        writer
    }

    async fn unbind_local_stream(&self, _: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        if info.mime_type.starts_with("video/") {
            Arc::new(LossyReader {
                inner: reader,
                link: self.clone(),
            })
        } else {
            reader
        }
    }

    async fn unbind_remote_stream(&self, _: &StreamInfo) {}

    async fn close(&self) -> Result<(), webrtc::interceptor::Error> {
        Ok(())
    }
}

/// The link on one incoming video stream.
struct LossyReader {
    inner: Arc<dyn RTPReader + Send + Sync>,
    link: LossyLink,
}

#[async_trait::async_trait]
impl RTPReader for LossyReader {
    async fn read(
        &self,
        buf: &mut [u8],
        attributes: &Attributes,
    ) -> Result<(webrtc::rtp::packet::Packet, Attributes), webrtc::interceptor::Error> {
        loop {
            let (packet, attributes) = self.inner.read(buf, attributes).await?;
            let seq = packet.header.sequence_number;
            let n = self.link.seen.fetch_add(1, Ordering::SeqCst) + 1;
            let mut dropped = lock(&self.link.dropped);
            let again = dropped.contains(&seq);
            if (again && self.link.for_good) || (!again && n.is_multiple_of(self.link.every)) {
                dropped.insert(seq);
                continue;
            }
            return Ok((packet, attributes));
        }
    }
}
