//! Who is on the other end of a request, for the per-address limits.
//!
//! The peer address of the TCP connection, unless that peer is a configured
//! trusted proxy: then the right-most address of `X-Forwarded-For` that is not
//! itself a trusted proxy (the one the nearest proxy saw). Off by default: with
//! no trusted proxies `X-Forwarded-For` is never read, so a client cannot pick
//! its own address.

use std::future::{ready, Ready};
use std::net::{IpAddr, Ipv4Addr};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

use crate::error::ApiError;
use crate::state::AppState;

/// Networks whose `X-Forwarded-For` is believed (`trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

/// An address block: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{text:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| anyhow::anyhow!("{text:?}: prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR blocks.
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Network::parse)
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: `peer`, or what trusted proxies say it is.
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        // Right to left: each trusted hop vouches for the address before it.
        let mut client = peer;
        for hop in header.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The address a request comes from (see the module docs); an extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client address of `req` under `state`'s trusted proxies.
    pub fn of(req: &HttpRequest, state: &AppState) -> Self {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        Self(state.settings.trusted_proxies.client(peer, forwarded))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromRequest for ClientAddr {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.app_data::<web::Data<AppState>>()
                .map(|state| Self::of(req, state))
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing"))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.1"), Some("1.2.3.4")), ip("10.0.0.1"));
    }

    #[test]
    fn a_trusted_proxy_vouches_for_the_hop_before_it() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, ::1").unwrap();
        // The client wrote a fake first entry; the proxy appended the real one.
        let header = Some("6.6.6.6, 1.2.3.4");
        assert_eq!(proxies.client(ip("10.1.2.3"), header), ip("1.2.3.4"));
        // Two trusted hops.
        let header = Some("6.6.6.6, 1.2.3.4, 10.9.9.9");
        assert_eq!(proxies.client(ip("::1"), header), ip("1.2.3.4"));
        // An untrusted peer's header is ignored.
        assert_eq!(
            proxies.client(ip("8.8.8.8"), Some("1.2.3.4")),
            ip("8.8.8.8")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(proxies.client(ip("10.0.0.1"), Some("junk")), ip("10.0.0.1"));
        // IPv4-mapped peers count as IPv4.
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), Some("1.2.3.4")),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("not-an-ip").is_err());
        assert_eq!(
            TrustedProxies::parse(" ").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse("0.0.0.0/0")
            .unwrap()
            .trusts(ip("9.9.9.9")));
    }
}
