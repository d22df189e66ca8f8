//! A viewer's WHEP offer read, and the edge's answer written: one
//! `sendonly` leg per kind (the first audio and the first video section the
//! viewer can receive on), every codec of the offer the relay can forward
//! (so a host who switches codec needs no renegotiation), BUNDLE and
//! rtcp-mux required, ICE lite, DTLS server. No header extensions: the
//! relay sends bare RTP.

use std::fmt::Write as _;
use std::net::SocketAddr;

/// Codecs the relay forwards (RTP encoding names, as in `a=rtpmap`).
const VIDEO_CODECS: [&str; 4] = ["VP8", "VP9", "H264", "AV1"];
const AUDIO_CODECS: [&str; 1] = ["opus"];
/// Feedback the edge answers (RFC 4585 NACK, PLI, RFC 5104 FIR).
const FEEDBACK: [&str; 3] = ["nack", "nack pli", "ccm fir"];

/// One codec of an offer's media section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Codec {
    pub(crate) payload_type: u8,
    /// The encoding name (`VP8`, `opus`).
    pub(crate) name: String,
    pub(crate) clock_rate: u32,
    pub(crate) channels: Option<u16>,
    pub(crate) fmtp: Option<String>,
    pub(crate) feedback: Vec<String>,
}

/// What the viewer receives of one kind: its section and the codecs both
/// sides agreed on, in the viewer's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leg {
    pub(crate) mid: String,
    /// The SSRC the edge sends this leg with.
    pub(crate) ssrc: u32,
    pub(crate) codecs: Vec<Codec>,
}

impl Leg {
    /// The payload type this viewer gets `mime` (`video/H264`) with: the
    /// codec with the same `fmtp` if there is one, else the first of that
    /// name.
    pub(crate) fn payload_type(&self, mime: &str, fmtp: &str) -> Option<u8> {
        let name = mime.split_once('/').map_or(mime, |(_, name)| name);
        let named = || {
            self.codecs
                .iter()
                .filter(|c| c.name.eq_ignore_ascii_case(name))
        };
        named()
            .find(|c| c.fmtp.as_deref().unwrap_or_default() == fmtp)
            .or_else(|| named().next())
            .map(|c| c.payload_type)
    }
}

/// The viewer's DTLS certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// `sha-256`, `sha-384` or `sha-512`.
    pub(crate) algorithm: String,
    pub(crate) digest: Vec<u8>,
}

/// An offer the edge can answer.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    pub(crate) ice_ufrag: String,
    pub(crate) ice_pwd: String,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) video: Option<Leg>,
    pub(crate) audio: Option<Leg>,
    sections: Vec<Section>,
}

#[derive(Debug, Clone)]
struct Section {
    /// `m=<kind> <port> <proto> <formats>`, split.
    kind: String,
    proto: String,
    formats: String,
    mid: String,
    rtcp_rsize: bool,
    /// The leg this section carries (`None`: rejected).
    leg: Option<Kind>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
}

fn attr<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        l.strip_prefix("a=")
            .and_then(|a| a.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn has_flag(lines: &[&str], key: &str) -> bool {
    lines.iter().any(|l| l.strip_prefix("a=") == Some(key))
}

fn parse_fingerprint(value: &str) -> Result<Fingerprint, String> {
    let (algorithm, hex) = value
        .split_once(' ')
        .ok_or("a=fingerprint must be `<hash> <hex:hex:...>`")?;
    let algorithm = algorithm.to_ascii_lowercase();
    if !["sha-256", "sha-384", "sha-512"].contains(&algorithm.as_str()) {
        return Err(format!(
            "unsupported fingerprint hash `{algorithm}` (sha-256, sha-384 or sha-512)"
        ));
    }
    let digest = hex
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "a=fingerprint has a byte that is not hex".to_owned())?;
    Ok(Fingerprint { algorithm, digest })
}

fn parse_codecs(lines: &[&str], formats: &str, allowed: &[&str]) -> Vec<Codec> {
    let mut codecs = Vec::new();
    for pt in formats.split_whitespace() {
        let Ok(payload_type) = pt.parse::<u8>() else {
            continue;
        };
        let Some(rtpmap) = lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("a=rtpmap:{pt} ")).map(str::trim))
        else {
            continue;
        };
        let mut parts = rtpmap.split('/');
        let name = parts.next().unwrap_or_default().trim().to_owned();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&name)) {
            continue;
        }
        let Some(clock_rate) = parts.next().and_then(|c| c.trim().parse().ok()) else {
            continue;
        };
        let channels = parts.next().and_then(|c| c.trim().parse().ok());
        let fmtp = lines.iter().find_map(|l| {
            l.strip_prefix(&format!("a=fmtp:{pt} "))
                .map(|f| f.trim().to_owned())
        });
        let feedback = lines
            .iter()
            .filter_map(|l| l.strip_prefix(&format!("a=rtcp-fb:{pt} ")))
            .map(str::trim)
            .filter(|f| FEEDBACK.contains(f))
            .map(str::to_owned)
            .collect();
        codecs.push(Codec {
            payload_type,
            name,
            clock_rate,
            channels,
            fmtp,
            feedback,
        });
    }
    codecs
}

impl Offer {
    /// Reads a viewer's offer; `Err` says what the viewer must change.
    pub(crate) fn parse(sdp: &str) -> Result<Self, String> {
        let lines: Vec<&str> = sdp.lines().map(str::trim_end).collect();
        let starts: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with("m="))
            .map(|(i, _)| i)
            .collect();
        let session = &lines[..starts.first().copied().unwrap_or(lines.len())];
        let mut ice_ufrag = attr(session, "ice-ufrag");
        let mut ice_pwd = attr(session, "ice-pwd");
        let mut fingerprint = attr(session, "fingerprint");
        let mut setup = attr(session, "setup");
        let bundle: Vec<&str> = attr(session, "group")
            .and_then(|g| g.strip_prefix("BUNDLE"))
            .map(|mids| mids.split_whitespace().collect())
            .unwrap_or_default();
        let mut sections = Vec::new();
        let (mut video, mut audio) = (None, None);
        let mut ssrc = rand::random::<u32>() | 1;
        for (n, &start) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(lines.len());
            let lines = &lines[start..end];
            let mut m = lines[0].trim_start_matches("m=").splitn(4, ' ');
            let kind = m.next().unwrap_or_default().to_owned();
            let port = m.next().unwrap_or_default();
            let proto = m.next().unwrap_or_default().to_owned();
            let formats = m.next().unwrap_or_default().to_owned();
            let mid = attr(lines, "mid").unwrap_or_default().to_owned();
            ice_ufrag = ice_ufrag.or_else(|| attr(lines, "ice-ufrag"));
            ice_pwd = ice_pwd.or_else(|| attr(lines, "ice-pwd"));
            fingerprint = fingerprint.or_else(|| attr(lines, "fingerprint"));
            setup = setup.or_else(|| attr(lines, "setup"));
            let receives = !has_flag(lines, "sendonly") && !has_flag(lines, "inactive");
            let usable = port != "0" || has_flag(lines, "bundle-only");
            let leg = match kind.as_str() {
                "video" if video.is_none() && receives && usable => Some(Kind::Video),
                "audio" if audio.is_none() && receives && usable => Some(Kind::Audio),
                _ => None,
            };
            let leg = leg.and_then(|k| {
                let allowed: &[&str] = if k == Kind::Video {
                    &VIDEO_CODECS
                } else {
                    &AUDIO_CODECS
                };
                let codecs = parse_codecs(lines, &formats, allowed);
                if codecs.is_empty() || mid.is_empty() {
                    return None;
                }
                ssrc = ssrc.wrapping_add(2);
                let leg = Leg {
                    mid: mid.clone(),
                    ssrc,
                    codecs,
                };
                if k == Kind::Video {
                    video = Some(leg);
                } else {
                    audio = Some(leg);
                }
                Some(k)
            });
            if leg.is_some() && !has_flag(lines, "rtcp-mux") {
                return Err(format!("media section `{mid}` must use rtcp-mux"));
            }
            if leg.is_some() && !bundle.contains(&mid.as_str()) {
                return Err(format!("media section `{mid}` must be in the BUNDLE group"));
            }
            sections.push(Section {
                rtcp_rsize: has_flag(lines, "rtcp-rsize"),
                kind,
                proto,
                formats,
                mid,
                leg,
            });
        }
        if video.is_none() && audio.is_none() {
            return Err(
                "the offer receives no audio or video the relay sends (VP8, VP9, H264, AV1, Opus)"
                    .into(),
            );
        }
        if setup.is_some_and(|s| s.eq_ignore_ascii_case("passive")) {
            return Err("the relay is the DTLS server: offer a=setup:actpass or active".into());
        }
        let (Some(ice_ufrag), Some(ice_pwd)) = (ice_ufrag, ice_pwd) else {
            return Err("the offer has no a=ice-ufrag and a=ice-pwd".into());
        };
        let fingerprint = parse_fingerprint(fingerprint.ok_or("the offer has no a=fingerprint")?)?;
        Ok(Self {
            ice_ufrag: ice_ufrag.to_owned(),
            ice_pwd: ice_pwd.to_owned(),
            fingerprint,
            video,
            audio,
            sections,
        })
    }

    /// The answer: our ICE credentials and certificate `fingerprint`
    /// (`sha-256 AB:CD:..`), host candidates at `candidates`.
    pub(crate) fn answer(
        &self,
        ufrag: &str,
        pwd: &str,
        fingerprint: &str,
        candidates: &[SocketAddr],
    ) -> String {
        let mut sdp = String::with_capacity(2048);
        let session: u64 = rand::random::<u64>() >> 2;
        let bundle: Vec<&str> = self
            .sections
            .iter()
            .filter(|s| s.leg.is_some())
            .map(|s| s.mid.as_str())
            .collect();
        let _ = write!(
            sdp,
            "v=0\r\no=- {session} 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
             a=group:BUNDLE {}\r\na=msid-semantic: WMS simmer\r\n",
            bundle.join(" ")
        );
        for section in &self.sections {
            let leg = match section.leg {
                Some(Kind::Video) => self.video.as_ref(),
                Some(Kind::Audio) => self.audio.as_ref(),
                None => None,
            };
            let Some(leg) = leg else {
                let _ = write!(
                    sdp,
                    "m={} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\n",
                    section.kind, section.proto, section.formats
                );
                if !section.mid.is_empty() {
                    let _ = write!(sdp, "a=mid:{}\r\n", section.mid);
                }
                sdp.push_str("a=inactive\r\n");
                continue;
            };
            let pts: Vec<String> = leg
                .codecs
                .iter()
                .map(|c| c.payload_type.to_string())
                .collect();
            let _ = write!(
                sdp,
                "m={} 9 {} {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\n\
                 a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:{fingerprint}\r\n\
                 a=setup:passive\r\na=rtcp-mux\r\n",
                section.kind,
                section.proto,
                pts.join(" "),
                leg.mid
            );
            if section.rtcp_rsize {
                sdp.push_str("a=rtcp-rsize\r\n");
            }
            let _ = write!(sdp, "a=sendonly\r\na=msid:simmer {}\r\n", section.kind);
            for c in &leg.codecs {
                let _ = write!(
                    sdp,
                    "a=rtpmap:{} {}/{}",
                    c.payload_type, c.name, c.clock_rate
                );
                if let Some(channels) = c.channels {
                    let _ = write!(sdp, "/{channels}");
                }
                sdp.push_str("\r\n");
                if let Some(fmtp) = &c.fmtp {
                    let _ = write!(sdp, "a=fmtp:{} {fmtp}\r\n", c.payload_type);
                }
                for f in &c.feedback {
                    let _ = write!(sdp, "a=rtcp-fb:{} {f}\r\n", c.payload_type);
                }
            }
            let _ = write!(
                sdp,
                "a=ssrc:{0} cname:simmer\r\na=ssrc:{0} msid:simmer {1}\r\n",
                leg.ssrc, section.kind
            );
            for (n, addr) in candidates.iter().enumerate() {
                let _ = write!(
                    sdp,
                    "a=candidate:{} 1 udp {} {} {} typ host\r\n",
                    n + 1,
                    2_130_706_431u32.saturating_sub(n as u32),
                    addr.ip(),
                    addr.port()
                );
            }
            sdp.push_str("a=end-of-candidates\r\n");
        }
        sdp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like Chrome's WHEP offer (recvonly audio and video).
    const OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Xy1z\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Xy1z\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 goog-remb\r\n\
a=rtcp-fb:96 transport-cc\r\n\
a=rtcp-fb:96 ccm fir\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n\
a=rtpmap:103 H264/90000\r\n\
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
a=rtpmap:45 AV1/90000\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:2\r\n\
a=sctp-port:5000\r\n";

    #[test]
    fn an_offer_gets_a_sendonly_leg_per_kind_with_the_codecs_both_know() {
        let offer = Offer::parse(OFFER).unwrap();
        assert_eq!(offer.ice_ufrag, "Xy1z");
        assert_eq!(offer.fingerprint.algorithm, "sha-256");
        assert_eq!(offer.fingerprint.digest.len(), 32);
        let video = offer.video.as_ref().unwrap();
        assert_eq!(video.mid, "1");
        let names: Vec<_> = video.codecs.iter().map(|c| c.payload_type).collect();
        assert_eq!(names, vec![96, 102, 103, 45]);
        assert_eq!(
            video.codecs[0].feedback,
            vec!["ccm fir", "nack", "nack pli"]
        );
        assert_eq!(video.payload_type("video/VP8", ""), Some(96));
        assert_eq!(
            video.payload_type(
                "video/H264",
                "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"
            ),
            Some(103)
        );
        assert_eq!(video.payload_type("video/H264", "other"), Some(102));
        assert_eq!(video.payload_type("video/H265", ""), None);
        let audio = offer.audio.as_ref().unwrap();
        assert_eq!(audio.payload_type("audio/opus", ""), Some(111));
        assert_ne!(audio.ssrc, video.ssrc);

        let addr: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let answer = offer.answer("ours", "secretsecretsecretsecret", "sha-256 AA:BB", &[addr]);
        assert!(answer.contains("a=ice-lite\r\n"));
        assert!(answer.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(answer.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert!(answer.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 102 103 45\r\n"));
        assert!(answer.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n"));
        assert!(answer.contains("a=setup:passive\r\n"));
        assert!(answer.contains("a=sendonly\r\n"));
        assert!(answer.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n"));
        assert!(answer.contains(&format!("a=ssrc:{} cname:simmer", video.ssrc)));
        assert!(!answer.contains("extmap"));
        assert!(!answer.contains("transport-cc"));
        assert!(!answer.contains("rtx"));
    }

    #[test]
    fn offers_the_edge_cannot_answer_say_why() {
        let passive = OFFER.replace("a=setup:actpass", "a=setup:passive");
        assert!(Offer::parse(&passive).unwrap_err().contains("DTLS server"));
        let unbundled = OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
        assert!(Offer::parse(&unbundled).unwrap_err().contains("BUNDLE"));
        let no_mux = OFFER.replace("a=rtcp-mux\r\n", "");
        assert!(Offer::parse(&no_mux).unwrap_err().contains("rtcp-mux"));
        let sending = OFFER.replace("a=recvonly", "a=sendonly");
        assert!(Offer::parse(&sending).unwrap_err().contains("receives no"));
        let md5 = OFFER.replace("sha-256 0A", "md5 0A");
        assert!(Offer::parse(&md5).unwrap_err().contains("unsupported"));
        let no_ice = OFFER.replace("a=ice-pwd:", "a=x-pwd:");
        assert!(Offer::parse(&no_ice).unwrap_err().contains("ice-pwd"));
    }
}
