# shellcheck shell=bash
# Sourced inside a test or benchmark network namespace.

# Drops one UDP datagram in $1 arriving in this namespace (an nftables rule
# on input, so over loopback each direction loses one in $1). Needs `nft`.
drop_one_udp_datagram_in() {
    nft add table inet loss
    nft add chain inet loss in '{ type filter hook input priority 0; }'
    nft add rule inet loss in meta l4proto udp numgen random mod "$1" == 0 drop
}
