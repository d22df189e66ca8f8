//! Which watch feeds are open on this node, per device, so that revoking or
//! re-targeting a watch reaches its live feeds at once, and so that one
//! device token cannot hold more than a few feeds open (a new one replaces
//! the oldest).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use uuid::Uuid;

/// What a device's open feeds are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeviceControl {
    /// The user removed the watch: say `bye` and close.
    Revoked,
    /// The watch now follows this session: send its snapshot.
    Retarget(Uuid),
    /// A newer feed of the same device took this one's place: say `bye`
    /// and close.
    Replaced,
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

    /// Registers an open feed of `device`; when it already has `max` (at
    /// least 1), the oldest ones are told [`DeviceControl::Replaced`] and no
    /// longer count.
    pub fn attach(
        &self,
        device: Uuid,
        max: usize,
    ) -> (Attachment, mpsc::UnboundedReceiver<DeviceControl>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut feeds = self.lock();
        let of_device = feeds.entry(device).or_default();
        while of_device.len() >= max.max(1) {
            // Ids grow, so the smallest is the oldest.
            let Some(oldest) = of_device.keys().min().copied() else {
                break;
            };
            if let Some(old) = of_device.remove(&oldest) {
                let _ = old.send(DeviceControl::Replaced);
            }
        }
        of_device.insert(id, tx);
        drop(feeds);
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

    /// How many feeds of `device` are open on this node.
    pub fn connected_feeds(&self, device: Uuid) -> usize {
        self.lock().get(&device).map_or(0, HashMap::len)
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
        let (first, mut rx1) = hub.attach(device, 2);
        let (second, mut rx2) = hub.attach(device, 2);
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 2);
        assert_eq!(rx1.try_recv().ok(), Some(DeviceControl::Revoked));
        assert_eq!(rx2.try_recv().ok(), Some(DeviceControl::Revoked));
        drop(first);
        assert!(hub.connected(device));
        drop(second);
        assert!(!hub.connected(device));
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 0);
    }

    #[test]
    fn a_feed_over_the_cap_replaces_the_oldest() {
        let hub = WatchHub::default();
        let device = Uuid::now_v7();
        let (_first, mut rx1) = hub.attach(device, 2);
        let (_second, mut rx2) = hub.attach(device, 2);
        let (_third, mut rx3) = hub.attach(device, 2);
        assert_eq!(rx1.try_recv().ok(), Some(DeviceControl::Replaced));
        assert!(rx2.try_recv().is_err());
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 2);
        assert_eq!(rx2.try_recv().ok(), Some(DeviceControl::Revoked));
        assert_eq!(rx3.try_recv().ok(), Some(DeviceControl::Revoked));
        assert!(
            rx1.try_recv().is_err(),
            "a replaced feed is told nothing more"
        );
    }
}
