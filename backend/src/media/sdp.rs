//! The little SDP handling the relay does itself: a sanity check of an offer
//! and dropping remote ICE candidates it must never send to.

use std::net::IpAddr;

/// Why an offer is refused before it reaches the WebRTC stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the body is not an SDP offer (it must start with `v=0`)")]
    NotSdp,
    #[error("the offer has no audio or video media section")]
    NoMedia,
}

/// Checks that `sdp` looks like an offer with media.
pub fn check_offer(sdp: &str) -> Result<(), OfferError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(OfferError::NotSdp);
    }
    if !sdp
        .lines()
        .any(|l| l.starts_with("m=audio") || l.starts_with("m=video"))
    {
        return Err(OfferError::NoMedia);
    }
    Ok(())
}

/// The offer without the candidates whose address `allowed` refuses (and
/// without mDNS `.local` ones, which would need multicast to resolve).
pub fn filter_candidates(sdp: &str, allowed: impl Fn(IpAddr) -> bool) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let keep = match line.trim_end().strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ ...
            Some(rest) => rest
                .split_whitespace()
                .nth(4)
                .and_then(|addr| addr.parse::<IpAddr>().ok())
                .is_some_and(&allowed),
            None => true,
        };
        if keep {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str =
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
a=candidate:2 1 udp 2130706431 192.168.1.7 5001 typ host\r\n\
a=candidate:3 1 udp 2130706431 abcd.local 5002 typ host\r\n\
a=mid:0\r\n";

    #[test]
    fn only_allowed_candidates_stay() {
        let filtered = filter_candidates(OFFER, |ip| ip.is_loopback());
        assert!(filtered.contains("127.0.0.1 5000"));
        assert!(!filtered.contains("192.168.1.7"));
        assert!(!filtered.contains(".local"));
        assert!(filtered.ends_with("a=mid:0\r\n"));
    }

    #[test]
    fn offers_are_checked() {
        assert_eq!(check_offer(OFFER), Ok(()));
        assert_eq!(check_offer("hello"), Err(OfferError::NotSdp));
        assert_eq!(check_offer("v=0\r\ns=-\r\n"), Err(OfferError::NoMedia));
    }
}
