//! Which watch feeds are open on this node, per device, so that revoking or
//! re-targeting a watch reaches its live feeds at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use uuid::Uuid;

/// What a device's open feeds are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceControl {
    /// The user removed the watch: say `bye` and close.
    Revoked,
    /// The watch now follows this session: send its snapshot.
    Retarget(Uuid),
}

type Feeds = HashMap<Uuid, HashMap<u64, mpsc::UnboundedSender<DeviceControl>>>;

/// The node's open watch feeds. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WatchHub {
    feeds: Arc<Mutex<Feeds>>,
    next_id: Arc<AtomicU64>,
}

/// An open feed's place in the hub; leaving it (drop) detaches the feed.
#[derive(Debug)]
pub struct Attachment {
    hub: WatchHub,
    device: Uuid,
    id: u64,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut feeds = self.hub.lock();
        if let Some(of_device) = feeds.get_mut(&self.device) {
            of_device.remove(&self.id);
            if of_device.is_empty() {
                feeds.remove(&self.device);
            }
        }
    }
}

impl WatchHub {
    fn lock(&self) -> MutexGuard<'_, Feeds> {
        self.feeds
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers an open feed of `device`.
    pub fn attach(&self, device: Uuid) -> (Attachment, mpsc::UnboundedReceiver<DeviceControl>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(device).or_default().insert(id, tx);
        (
            Attachment {
                hub: self.clone(),
                device,
                id,
            },
            rx,
        )
    }

    /// Tells every open feed of `device`; returns how many were told.
    pub fn tell(&self, device: Uuid, control: DeviceControl) -> usize {
        self.lock()
            .get(&device)
            .map(|feeds| feeds.values().filter(|tx| tx.send(control).is_ok()).count())
            .unwrap_or(0)
    }

    /// Whether the device has an open feed on this node.
    pub fn connected(&self, device: Uuid) -> bool {
        self.lock().contains_key(&device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_are_told_until_they_detach() {
        let hub = WatchHub::default();
        let device = Uuid::now_v7();
        let (first, mut rx1) = hub.attach(device);
        let (second, mut rx2) = hub.attach(device);
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 2);
        assert_eq!(rx1.try_recv().ok(), Some(DeviceControl::Revoked));
        assert_eq!(rx2.try_recv().ok(), Some(DeviceControl::Revoked));
        drop(first);
        assert!(hub.connected(device));
        drop(second);
        assert!(!hub.connected(device));
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 0);
    }
}
