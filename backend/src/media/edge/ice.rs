//! ICE lite (RFC 8445 2.5): the edge is always reachable at its host
//! candidates and only answers the viewer's connectivity checks; the viewer
//! (the controlling agent) nominates. A check is a STUN binding request
//! whose USERNAME is `<our ufrag>:<their ufrag>`, signed with our password.

use std::net::SocketAddr;

use webrtc::stun::attributes::{ATTR_USERNAME, ATTR_USE_CANDIDATE};
use webrtc::stun::fingerprint::FINGERPRINT;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
use webrtc::stun::xoraddr::XorMappedAddress;

/// What a datagram on the edge's port is (RFC 7983 5.1.2, first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Datagram {
    Stun,
    Dtls,
    /// SRTP or SRTCP (a viewer sends only RTCP).
    Rtp,
    Other,
}

impl Datagram {
    pub(super) fn of(packet: &[u8]) -> Self {
        match packet.first() {
            Some(0..=3) => Self::Stun,
            Some(20..=63) => Self::Dtls,
            Some(128..=191) => Self::Rtp,
            _ => Self::Other,
        }
    }
}

/// Our ufrag in a binding request (the part of USERNAME before `:`), not
/// yet checked: which viewer a first check is for.
pub(super) fn local_ufrag(packet: &[u8]) -> Option<String> {
    let mut m = Message::new();
    m.unmarshal_binary(packet).ok()?;
    if m.typ != BINDING_REQUEST {
        return None;
    }
    let username = String::from_utf8(m.get(ATTR_USERNAME).ok()?).ok()?;
    let (local, _) = username.split_once(':')?;
    Some(local.to_owned())
}

/// A check that passed.
#[derive(Debug)]
pub(super) struct Check {
    /// The success response to send back to where the check came from.
    pub(super) response: Vec<u8>,
    /// The viewer nominated this path (USE-CANDIDATE).
    pub(super) nominated: bool,
}

/// Answers a binding request from `from` if it is for `ufrag` (ours) and
/// `remote_ufrag` (the viewer's) and signed with `pwd` (ours).
pub(super) fn answer(
    packet: &[u8],
    ufrag: &str,
    remote_ufrag: &str,
    pwd: &str,
    from: SocketAddr,
) -> Option<Check> {
    let mut m = Message::new();
    m.unmarshal_binary(packet).ok()?;
    if m.typ != BINDING_REQUEST {
        return None;
    }
    let username = String::from_utf8(m.get(ATTR_USERNAME).ok()?).ok()?;
    if username.split_once(':') != Some((ufrag, remote_ufrag)) {
        return None;
    }
    let integrity = MessageIntegrity::new_short_term_integrity(pwd.to_owned());
    integrity.check(&mut m).ok()?;
    FINGERPRINT.check(&m).ok()?;
    let nominated = m.contains(ATTR_USE_CANDIDATE);
    let mut out = Message::new();
    let setters: [Box<dyn Setter>; 5] = [
        Box::new(m),
        Box::new(BINDING_SUCCESS),
        Box::new(XorMappedAddress {
            ip: from.ip(),
            port: from.port(),
        }),
        Box::new(integrity),
        Box::new(FINGERPRINT),
    ];
    out.build(&setters).ok()?;
    Some(Check {
        response: out.raw,
        nominated,
    })
}

/// A check of our own, to the address a viewer's check came from, sent
/// before the viewer nominated. A lite agent need not send any (RFC 8445
/// 2.5), but clients that nominate on their pacing timer (the `webrtc`
/// crate checks every 200 ms) nominate at once a pair that has just been
/// checked from the other side: the first packet ~200 ms sooner.
pub(super) fn triggered_check(
    ufrag: &str,
    remote_ufrag: &str,
    remote_pwd: &str,
) -> Option<Vec<u8>> {
    use webrtc::ice::control::AttrControlled;
    use webrtc::ice::priority::PriorityAttr;
    use webrtc::stun::agent::TransactionId;
    use webrtc::stun::textattrs::TextAttribute;
    let mut m = Message::new();
    let setters: [Box<dyn Setter>; 7] = [
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(TextAttribute::new(
            ATTR_USERNAME,
            format!("{remote_ufrag}:{ufrag}"),
        )),
        Box::new(AttrControlled(rand::random())),
        // A host candidate's priority (RFC 8445 5.1.2.1, type preference 126).
        Box::new(PriorityAttr(2_130_706_431)),
        Box::new(MessageIntegrity::new_short_term_integrity(
            remote_pwd.to_owned(),
        )),
        Box::new(FINGERPRINT),
    ];
    m.build(&setters).ok()?;
    Some(m.raw)
}

#[cfg(test)]
mod tests {
    use webrtc::stun::agent::TransactionId;
    use webrtc::stun::attributes::ATTR_USE_CANDIDATE;
    use webrtc::stun::message::Getter;
    use webrtc::stun::textattrs::TextAttribute;

    use super::*;

    fn request(username: &str, pwd: &str, nominate: bool) -> Vec<u8> {
        let mut m = Message::new();
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())),
        ];
        if nominate {
            setters.push(Box::new(UseCandidate));
        }
        setters.push(Box::new(MessageIntegrity::new_short_term_integrity(
            pwd.to_owned(),
        )));
        setters.push(Box::new(FINGERPRINT));
        m.build(&setters).unwrap();
        m.raw
    }

    struct UseCandidate;
    impl Setter for UseCandidate {
        fn add_to(&self, m: &mut Message) -> Result<(), webrtc::stun::Error> {
            m.add(ATTR_USE_CANDIDATE, &[]);
            Ok(())
        }
    }

    #[test]
    fn a_signed_check_is_answered_with_the_address_it_came_from() {
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let packet = request("edge:view", "secret", true);
        assert_eq!(Datagram::of(&packet), Datagram::Stun);
        assert_eq!(local_ufrag(&packet).as_deref(), Some("edge"));
        let check = answer(&packet, "edge", "view", "secret", from).unwrap();
        assert!(check.nominated);
        let mut response = Message::new();
        response.unmarshal_binary(&check.response).unwrap();
        assert_eq!(response.typ, BINDING_SUCCESS);
        MessageIntegrity::new_short_term_integrity("secret".into())
            .check(&mut response)
            .unwrap();
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&response).unwrap();
        assert_eq!((mapped.ip, mapped.port), (from.ip(), from.port()));
    }

    #[test]
    fn our_own_check_is_signed_with_the_viewers_password() {
        let ours = triggered_check("edge", "view", "theirs").unwrap();
        let mut m = Message::new();
        m.unmarshal_binary(&ours).unwrap();
        assert_eq!(m.typ, BINDING_REQUEST);
        assert_eq!(m.get(ATTR_USERNAME).unwrap(), b"view:edge");
        MessageIntegrity::new_short_term_integrity("theirs".into())
            .check(&mut m)
            .unwrap();
        FINGERPRINT.check(&m).unwrap();
    }

    #[test]
    fn a_check_with_the_wrong_password_or_names_is_ignored() {
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let packet = request("edge:view", "guess", false);
        assert!(answer(&packet, "edge", "view", "secret", from).is_none());
        let packet = request("edge:other", "secret", false);
        assert!(answer(&packet, "edge", "view", "secret", from).is_none());
        let plain = request("edge:view", "secret", false);
        assert!(
            !answer(&plain, "edge", "view", "secret", from)
                .unwrap()
                .nominated
        );
        assert!(local_ufrag(b"\x80\x60junk").is_none());
        assert_eq!(Datagram::of(&[22, 254, 253]), Datagram::Dtls);
        assert_eq!(Datagram::of(&[0x80, 200]), Datagram::Rtp);
    }
}
