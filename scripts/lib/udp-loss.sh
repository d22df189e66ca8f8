# shellcheck shell=bash
# Sourced inside a test or benchmark network namespace.

# Drops one UDP datagram in $1 arriving in this namespace (an nftables rule
# on input, so over loopback each direction loses one in $1). Needs `nft`.
drop_one_udp_datagram_in() {
    nft add table inet loss
    nft add chain inet loss in '{ type filter hook input priority 0; }'
    nft add rule inet loss in meta l4proto udp numgen random mod "$1" == 0 drop
}

# Drops, on each UDP flow (addresses and ports, each way) arriving in this
# namespace, the first datagram that begins with a DTLS ChangeCipherSpec
# record: the DTLS server's last handshake flight (ChangeCipherSpec,
# Finished), whoever the server is. The flows that lost one are listed in
# the set `inet handshake_loss dropped`. Needs `nft`.
drop_first_change_cipher_spec_per_flow() {
    nft -f - <<'NFT'
table inet handshake_loss {
    set dropped {
        type ipv4_addr . inet_service . ipv4_addr . inet_service
        flags dynamic
    }
    chain in {
        type filter hook input priority 0; policy accept;
        udp length > 9 @th,64,8 20 ip saddr . udp sport . ip daddr . udp dport != @dropped add @dropped { ip saddr . udp sport . ip daddr . udp dport } drop
    }
}
NFT
}
