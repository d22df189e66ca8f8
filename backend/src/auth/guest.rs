//! Guests: viewers without an account, each with a token for one session.
//!
//! Anyone can ask for a guest token, so a guest's id alone holds nothing: a
//! muted or rate-limited guest would mint a new one. A guest's id therefore
//! carries where it came from: its first six bytes are a keyed hash of the
//! session and the client's network (the address; for IPv6 its /64), the rest
//! is random. Mutes, the chat rate and the connection cap then also apply to
//! the network (`net_of`), which a new token does not change; the address
//! itself is not readable from the id, and differs per session.

use std::net::IpAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How many users' worth of a per-user limit (chat rate, open connections)
/// all guests of one network share (a household or a classroom behind one
/// address).
pub const NETWORK_SHARE: u32 = 4;

/// Bytes of a guest id that name its network.
const NET_BYTES: usize = 6;

/// A guest's network, as the first bytes of its id.
pub type GuestNet = [u8; NET_BYTES];

/// The network part of a guest id.
pub fn net_of(guest_id: Uuid) -> GuestNet {
    let mut net = [0u8; NET_BYTES];
    net.copy_from_slice(&guest_id.as_bytes()[..NET_BYTES]);
    net
}

/// One id that stands for every guest of a network, for per-network
/// counters keyed by user id (never a real user's or guest's id: its random
/// half is zero).
pub fn net_key(guest_id: Uuid) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..NET_BYTES].copy_from_slice(&net_of(guest_id));
    Uuid::from_bytes(bytes)
}

/// The address as guests are grouped: IPv4 as it is, IPv6 by its /64 (one
/// subscriber's usual allocation, all of it theirs to pick from).
pub fn network(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(prefix.into())
            }
        },
        v4 => v4,
    }
}

/// A new guest id for `session_id` from `addr`; `key` is a server secret.
pub fn new_guest_id(key: &[u8], session_id: Uuid, addr: IpAddr) -> Uuid {
    let digest = Sha256::new()
        .chain_update(key)
        .chain_update(session_id.as_bytes())
        .chain_update(network(addr).to_string().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes[..NET_BYTES].copy_from_slice(&digest[..NET_BYTES]);
    rand::rngs::OsRng.fill_bytes(&mut bytes[NET_BYTES..]);
    // Version 8 (RFC 9562: custom layout); its version and variant bits sit
    // after the network part, which stays intact.
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_network_one_net_whatever_the_token() {
        let session = Uuid::new_v4();
        let a = new_guest_id(b"k", session, "203.0.113.9".parse().unwrap());
        let b = new_guest_id(b"k", session, "203.0.113.9".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(net_of(a), net_of(b));
        assert_eq!(net_key(a), net_key(b));
        assert_eq!(a.get_version_num(), 8);
        // IPv6: one /64 is one network.
        let c = new_guest_id(b"k", session, "2001:db8:1:2::1".parse().unwrap());
        let d = new_guest_id(b"k", session, "2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(net_of(c), net_of(d));
        // Another address, session or key: another network.
        let e = new_guest_id(b"k", session, "203.0.113.10".parse().unwrap());
        let f = new_guest_id(b"k", Uuid::new_v4(), "203.0.113.9".parse().unwrap());
        let g = new_guest_id(b"other", session, "203.0.113.9".parse().unwrap());
        assert_ne!(net_of(a), net_of(e));
        assert_ne!(net_of(a), net_of(f));
        assert_ne!(net_of(a), net_of(g));
    }
}
