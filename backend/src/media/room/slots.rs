//! A room's viewer slots. A slot is taken *before* an offer is negotiated
//! (the negotiation awaits; a check before it and an insert after would let
//! concurrent offers pass `max_subscribers` together) and given back if the
//! offer fails, the viewer leaves, or it never connects. Slots are counted
//! per viewer and per client address, so that no one client fills a room.
//! Plain data, no I/O: the room calls it under its lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use uuid::Uuid;

use super::{lock, MediaError};
use crate::media::ViewerLimits;

/// Who holds a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    /// The viewer: a user's or a guest's id.
    pub user: Uuid,
    /// The client address, IPv6 by its /64 (see [`Holder::new`]).
    pub addr: IpAddr,
}

impl Holder {
    /// An IPv6 client usually has a whole /64 to pick addresses from: it
    /// counts as one address.
    pub fn new(user: Uuid, addr: IpAddr) -> Self {
        let addr = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            },
            v4 => v4,
        };
        Self { user, addr }
    }
}

/// The slots of one room: who holds which (pending or answered).
#[derive(Debug, Default)]
pub(super) struct Slots {
    held: HashMap<Uuid, Holder>,
}

impl Slots {
    /// Takes slot `id` for `holder`, or says which limit it would pass.
    pub fn reserve(
        &mut self,
        id: Uuid,
        holder: Holder,
        max: usize,
        limits: &ViewerLimits,
    ) -> Result<(), MediaError> {
        // A slot that never connects is free again by then.
        let retry_after = limits.connect_timeout;
        let (mut mine, mut here) = (0, 0);
        for h in self.held.values() {
            mine += usize::from(h.user == holder.user);
            here += usize::from(h.addr == holder.addr);
        }
        if mine >= limits.per_viewer {
            return Err(MediaError::TooMany {
                detail: format!(
                    "you already play this session {mine} times; end one (DELETE its resource) first"
                ),
                retry_after,
            });
        }
        if here >= limits.per_address {
            return Err(MediaError::TooMany {
                detail: format!("{here} players of this session are already at your address"),
                retry_after,
            });
        }
        if self.held.len() >= max {
            return Err(MediaError::Full(max));
        }
        self.held.insert(id, holder);
        Ok(())
    }

    /// Gives slot `id` back (if it is held).
    pub fn release(&mut self, id: Uuid) {
        self.held.remove(&id);
    }

    pub fn clear(&mut self) {
        self.held.clear();
    }
}

/// A slot taken for an offer being negotiated: given back when dropped,
/// unless [`Reservation::keep`] says the viewer now holds it.
pub(super) struct Reservation<'a> {
    slots: &'a Mutex<Slots>,
    id: Uuid,
    kept: bool,
}

impl<'a> Reservation<'a> {
    pub fn take(
        slots: &'a Mutex<Slots>,
        id: Uuid,
        holder: Holder,
        max: usize,
        limits: &ViewerLimits,
    ) -> Result<Self, MediaError> {
        lock(slots).reserve(id, holder, max, limits)?;
        Ok(Self {
            slots,
            id,
            kept: false,
        })
    }

    /// The viewer is in the room: the slot is its until it leaves.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            lock(self.slots).release(self.id);
        }
    }
}

/// The one publish being negotiated: a second one meanwhile is refused
/// (cleared when dropped).
pub(super) struct PublishClaim<'a>(&'a AtomicBool);

impl<'a> PublishClaim<'a> {
    pub fn take(pending: &'a AtomicBool) -> Result<Self, MediaError> {
        if pending.swap(true, Ordering::SeqCst) {
            return Err(MediaError::Conflict(
                "another publish of this session is being set up; wait for its answer".into(),
            ));
        }
        Ok(Self(pending))
    }
}

impl Drop for PublishClaim<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits() -> ViewerLimits {
        ViewerLimits {
            per_viewer: 2,
            per_address: 3,
            connect_timeout: Duration::from_secs(5),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_viewer_an_address_and_the_room_each_have_a_limit() {
        let mut slots = Slots::default();
        let (alice, bob, carol) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let home = ip("10.0.0.1");
        let take = |slots: &mut Slots, user, addr, max| {
            slots.reserve(Uuid::now_v7(), Holder::new(user, addr), max, &limits())
        };
        assert!(take(&mut slots, alice, home, 10).is_ok());
        assert!(take(&mut slots, alice, home, 10).is_ok());
        assert!(matches!(
            take(&mut slots, alice, ip("10.0.0.2"), 10),
            Err(MediaError::TooMany { .. })
        ));
        assert!(take(&mut slots, bob, home, 10).is_ok());
        assert!(matches!(
            take(&mut slots, carol, home, 10),
            Err(MediaError::TooMany { .. })
        ));
        assert_eq!(
            take(&mut slots, carol, ip("10.0.0.9"), 3),
            Err(MediaError::Full(3))
        );
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let a = Holder::new(Uuid::nil(), ip("2001:db8:1:2:aaaa::1"));
        let b = Holder::new(Uuid::nil(), ip("2001:db8:1:2:bbbb::9"));
        let c = Holder::new(Uuid::nil(), ip("2001:db8:1:3::1"));
        assert_eq!(a.addr, b.addr);
        assert_ne!(a.addr, c.addr);
        let mapped = Holder::new(Uuid::nil(), ip("::ffff:10.0.0.1"));
        assert_eq!(mapped.addr, ip("10.0.0.1"));
    }

    #[test]
    fn a_reservation_not_kept_is_given_back() {
        let slots = Mutex::new(Slots::default());
        let who = Holder::new(Uuid::now_v7(), ip("10.0.0.1"));
        let failed = Reservation::take(&slots, Uuid::now_v7(), who, 1, &limits()).unwrap();
        assert!(Reservation::take(&slots, Uuid::now_v7(), who, 1, &limits()).is_err());
        drop(failed);
        let kept = Reservation::take(&slots, Uuid::now_v7(), who, 1, &limits()).unwrap();
        kept.keep();
        assert_eq!(lock(&slots).held.len(), 1);
    }

    #[test]
    fn one_publish_at_a_time() {
        let pending = AtomicBool::new(false);
        let first = PublishClaim::take(&pending).unwrap();
        assert!(PublishClaim::take(&pending).is_err());
        drop(first);
        assert!(PublishClaim::take(&pending).is_ok());
    }
}
