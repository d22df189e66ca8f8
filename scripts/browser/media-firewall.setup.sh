# shellcheck shell=bash
# Sourced by scripts/browser.sh inside the test's own network namespace,
# before the server starts, for media-firewall.mjs: a network that blocks
# UDP for the browser, and coturn that the browser reaches over TCP.
#
#   127.0.0.2  the relay's media: UDP ports 21000-21099
#   127.0.0.3  coturn: TURN over TCP only (port 3478), relaying to the relay
#              from UDP ports 20000-20099, checking the credentials Simmer
#              mints (use-auth-secret)
#
# The only UDP allowed is between coturn's relay ports and the relay's; the
# browser's UDP (from ephemeral ports, on any address) is dropped, as on a
# corporate or hotel network.
command -v turnserver >/dev/null || { echo "coturn (turnserver) is not installed" >&2; exit 1; }
command -v nft >/dev/null || { echo "nftables (nft) is not installed" >&2; exit 1; }
TURN_SECRET="$(head -c 24 /dev/urandom | base64)"
: >"$WORK/turnserver.conf" # not Debian's /etc/turnserver.conf
turnserver -c "$WORK/turnserver.conf" --no-cli --no-tls --no-dtls --no-udp \
    --listening-ip=127.0.0.3 --relay-ip=127.0.0.3 --listening-port=3478 \
    --min-port=20000 --max-port=20099 \
    --use-auth-secret --static-auth-secret="$TURN_SECRET" --realm=simmer.test \
    --allow-loopback-peers --fingerprint --no-multicast-peers \
    --userdb="$WORK/turndb" --pidfile="$WORK/turnserver.pid" \
    --log-file=stdout --simple-log --verbose >"$WORK/coturn.log" 2>&1 &
echo $! >>"$WORK/extra.pids"
# The relay offers the addresses of the machine's interfaces.
ip addr add 127.0.0.2/32 dev lo
nft -f - <<'NFT'
table inet firewall {
    chain output {
        type filter hook output priority 0; policy accept;
        meta l4proto != udp accept
        ip saddr 127.0.0.3 udp sport 20000-20099 ip daddr 127.0.0.2 udp dport 21000-21099 accept
        ip saddr 127.0.0.2 udp sport 21000-21099 ip daddr 127.0.0.3 udp dport 20000-20099 accept
        drop
    }
}
NFT
for _ in $(seq 1 50); do
    (exec 3<>/dev/tcp/127.0.0.3/3478) 2>/dev/null && break
    sleep 0.1
done
export SIMMER_MEDIA_BIND_IPS=127.0.0.2
export SIMMER_MEDIA_UDP_PORT_MIN=21000 SIMMER_MEDIA_UDP_PORT_MAX=21099
export SIMMER_MEDIA_ICE_SERVERS="turn:127.0.0.3:3478?transport=tcp"
export SIMMER_MEDIA_TURN_SECRET="$TURN_SECRET"
export SIMMER_TURN_LOG="$WORK/coturn.log"
