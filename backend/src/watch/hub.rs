//! Which watch feeds are open on this node, per device, so that revoking or
//! re-targeting a watch reaches its live feeds at once, and so that one
//! device token cannot hold more than a few feeds open (a new one replaces
//! the oldest).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
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

/// What one open feed has been told and not yet read. A slot rather than a
/// queue (a server holds one per watch): only the latest word matters, and
/// a `bye` is final.
#[derive(Debug, Default)]
struct Mailbox {
    control: Mutex<Option<DeviceControl>>,
    notify: Notify,
}

impl Mailbox {
    fn slot(&self) -> MutexGuard<'_, Option<DeviceControl>> {
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn tell(&self, control: DeviceControl) {
        {
            let mut slot = self.slot();
            let final_word = matches!(
                *slot,
                Some(DeviceControl::Revoked | DeviceControl::Replaced)
            );
            if !final_word {
                *slot = Some(control);
            }
        }
        self.notify.notify_one();
    }
}

/// Each device's open feeds, oldest first (ids grow).
type Feeds = HashMap<Uuid, Vec<(u64, Arc<Mailbox>)>>;

/// The node's open watch feeds. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WatchHub {
    feeds: Arc<Mutex<Feeds>>,
    next_id: Arc<AtomicU64>,
}

/// An open feed's place in the hub, where it hears what its device is told;
/// leaving it (drop) detaches the feed.
#[derive(Debug)]
pub struct Attachment {
    hub: WatchHub,
    device: Uuid,
    id: u64,
    mailbox: Arc<Mailbox>,
}

impl Attachment {
    /// The next word for this feed. Cancel-safe: the word waits in the
    /// mailbox until it is read.
    pub async fn control(&self) -> DeviceControl {
        loop {
            let told = {
                let mut slot = self.mailbox.slot();
                match *slot {
                    // Final: it stays for any later read too.
                    Some(DeviceControl::Revoked | DeviceControl::Replaced) => *slot,
                    _ => slot.take(),
                }
            };
            if let Some(control) = told {
                return control;
            }
            self.mailbox.notify.notified().await;
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut feeds = self.hub.lock();
        if let Some(of_device) = feeds.get_mut(&self.device) {
            of_device.retain(|(id, _)| *id != self.id);
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
    pub fn attach(&self, device: Uuid, max: usize) -> Attachment {
        let mailbox = Arc::new(Mailbox::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut feeds = self.lock();
        let of_device = feeds.entry(device).or_default();
        let over = (of_device.len() + 1).saturating_sub(max.max(1));
        for (_, oldest) in of_device.drain(..over) {
            oldest.tell(DeviceControl::Replaced);
        }
        of_device.push((id, mailbox.clone()));
        drop(feeds);
        Attachment {
            hub: self.clone(),
            device,
            id,
            mailbox,
        }
    }

    /// Tells every open feed of `device`; returns how many were told.
    pub fn tell(&self, device: Uuid, control: DeviceControl) -> usize {
        self.lock()
            .get(&device)
            .map(|feeds| {
                for (_, mailbox) in feeds {
                    mailbox.tell(control);
                }
                feeds.len()
            })
            .unwrap_or(0)
    }

    /// How many feeds of `device` are open on this node.
    pub fn connected_feeds(&self, device: Uuid) -> usize {
        self.lock().get(&device).map_or(0, Vec::len)
    }

    /// Whether the device has an open feed on this node.
    pub fn connected(&self, device: Uuid) -> bool {
        self.lock().contains_key(&device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    /// What the feed was told, if anything, without waiting.
    fn told(feed: &Attachment) -> Option<DeviceControl> {
        feed.control().now_or_never()
    }

    #[test]
    fn feeds_are_told_until_they_detach() {
        let hub = WatchHub::default();
        let device = Uuid::now_v7();
        let first = hub.attach(device, 2);
        let second = hub.attach(device, 2);
        assert_eq!(told(&first), None);
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 2);
        assert_eq!(told(&first), Some(DeviceControl::Revoked));
        assert_eq!(told(&second), Some(DeviceControl::Revoked));
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
        let first = hub.attach(device, 2);
        let second = hub.attach(device, 2);
        let third = hub.attach(device, 2);
        assert_eq!(told(&first), Some(DeviceControl::Replaced));
        assert_eq!(told(&second), None);
        assert_eq!(hub.connected_feeds(device), 2);
        assert_eq!(hub.tell(device, DeviceControl::Revoked), 2);
        assert_eq!(told(&second), Some(DeviceControl::Revoked));
        assert_eq!(told(&third), Some(DeviceControl::Revoked));
        assert_eq!(
            told(&first),
            Some(DeviceControl::Replaced),
            "a replaced feed is told nothing more"
        );
    }

    #[test]
    fn the_latest_retarget_wins_and_a_bye_is_final() {
        let hub = WatchHub::default();
        let device = Uuid::now_v7();
        let feed = hub.attach(device, 1);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        hub.tell(device, DeviceControl::Retarget(a));
        hub.tell(device, DeviceControl::Retarget(b));
        assert_eq!(told(&feed), Some(DeviceControl::Retarget(b)));
        assert_eq!(told(&feed), None, "a retarget is read once");
        hub.tell(device, DeviceControl::Revoked);
        hub.tell(device, DeviceControl::Retarget(a));
        assert_eq!(told(&feed), Some(DeviceControl::Revoked));
        assert_eq!(told(&feed), Some(DeviceControl::Revoked));
    }

    #[tokio::test]
    async fn a_waiting_feed_wakes_when_told() {
        let hub = WatchHub::default();
        let device = Uuid::now_v7();
        let feed = hub.attach(device, 1);
        let waiting = tokio::spawn(async move { feed.control().await });
        tokio::task::yield_now().await;
        hub.tell(device, DeviceControl::Revoked);
        assert_eq!(waiting.await.ok(), Some(DeviceControl::Revoked));
    }
}
