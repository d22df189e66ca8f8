# shellcheck shell=bash
# Sourced by scripts/browser.sh inside the test's own network namespace,
# before the server starts, for media-handshake-loss.mjs: every UDP flow
# loses the first datagram that begins with a DTLS ChangeCipherSpec, the
# DTLS server's last handshake flight (scripts/lib/udp-loss.sh).
command -v nft >/dev/null || { echo "nftables (nft) is not installed" >&2; exit 1; }
# shellcheck source=../lib/udp-loss.sh
. "$ROOT/scripts/lib/udp-loss.sh"
drop_first_change_cipher_spec_per_flow
