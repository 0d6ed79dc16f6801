/*
 * The relay's kernel forwarder: latched RTP lanes relayed by a tc program,
 * before the packet reaches any socket.
 *
 * Attached by a tcx link at the ingress of the interfaces that carry media
 * (gateway/media/kernel.py). A UDP/IPv4 datagram whose (local address, local
 * port, remote address, remote port) names a lane in the LANES map is what
 * the lane's flow socket would have read: the program does to it what
 * RtpReceiver.relay and the native forwarder (_fastpath.c) do, in the same
 * order and with the same counting:
 *
 *   - empty: dropped (RtpReceiver.relay ignores it);
 *   - not RTP or RTCP (first two bits not 2; RFC 7983 7): forwarded by the RTP
 *     route, not accounted;
 *   - one octet: dropped;
 *   - RTCP multiplexed on the RTP port (second octet 192-223; RFC 5761 4):
 *     forwarded by the RTCP route (dropped when the lane has none);
 *   - RTP: forwarded by the RTP route and counted out as it leaves (a send
 *     that fails is taken back and counted as a send error); when it
 *     holds the 12-octet fixed header, the sender's statistics take it:
 *     counters, RFC 3550 A.1 sequence tracking, A.3 loss and the A.8
 *     interarrival jitter. The program has no floating point: a transit is
 *     kept as the arrival (ns) and timestamp (timestamp units x 1e9) it came
 *     from, so the difference of two transits is exact in integers; jitter
 *     is kept in timestamp units x 1e9 (J += (|D| - J) / 16 rounds toward J
 *     by under 1e-9 of a unit). gateway/media/kernel.py converts both from
 *     and back into StreamStats' floats.
 *
 * Forwarding rewrites the addresses and ports to the route's (source: the
 * gateway's socket the packet would have left by; destination: the other
 * party) and fixes the IPv4 and UDP checksums. A packet from this host to an
 * address of this host (loopback) keeps the route it was sent with and goes
 * on up the stack (TC_ACT_OK); a packet from another host to another host
 * leaves by the interface the route names (looked up by kernel.py when the
 * lane began, and again after the host's routes change) with TTL 64, as the gateway's own sendto would send it, to the
 * next hop that bpf_redirect_neigh resolves. kernel.py gives the native
 * forwarder the two mixed cases. Such a packet passes no netfilter hook of
 * this host (tc ingress comes before them; redirect_neigh skips OUTPUT and
 * POSTROUTING): no SNAT, no firewall rule and no conntrack sees it, as with
 * rtpengine's kernel forwarding.
 *
 * A lane's entry holds its own key: a program that found the entry checks it
 * under the lock in which it reads the routes and counts (and again before it
 * corrects a failed send), so a lane removed and its memory reused for another
 * lane meanwhile (hash maps reuse freed entries at once) never sends one
 * call's packet by another's route; the packet goes on to the socket instead
 * (TC_ACT_UNSPEC), where the gateway reads what reaches a lane's flow socket.
 *
 * Everything else (another address, IPv6, fragments, IP options, a length
 * that does not add up, a VLAN tag kept aside, a GRO/GSO train, a frame for
 * another host) goes on into the stack untouched.
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define RTP_SEQ_MOD 65536LL
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define NS 1000000000ULL
#define TIMESTAMP_SPACE_NS (4294967296ULL * NS)
#define HALF_TIMESTAMP_SPACE_NS (2147483648ULL * NS)
/* Longest gap between two transits taken as it is (9.8 h): gap x 90 kHz plus a timestamp
 * difference stays inside 64 bits. */
#define MAX_GAP_NS (1LL << 45)
#define SENT_TTL 64

#define IP_OFF ETH_HLEN
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define PAYLOAD_OFF (UDP_OFF + sizeof(struct udphdr))

/* Network byte order throughout, as the packet carries them. */
struct lane_key {
    __u32 local_addr;
    __u32 remote_addr;
    __u16 local_port;
    __u16 remote_port;
};

struct route {
    __u32 src_addr; /* 0: no route, the packet is dropped */
    __u32 dst_addr;
    __u16 src_port;
    __u16 dst_port;
    __u32 ifindex; /* the interface the packet leaves by */
    __u32 local;   /* 1: the destination is this host's own address */
};

/* Field for field what gateway/media/kernel.py packs (LANE_FORMAT there). */
struct lane {
    struct bpf_spin_lock lock;
    __u32 clock_rate;
    struct lane_key key; /* the entry's own key (see the top) */
    __u32 reserved;
    struct route rtp;
    struct route rtcp;
    /* StreamStats' state */
    __s64 packets_in;
    __s64 bytes_in;
    __u64 last_ns;       /* 0: no packet yet */
    __s64 ssrc;          /* -1: none yet */
    __s64 run_start;
    __s64 base_seq;
    __s64 max_seq;
    __s64 cycles;
    __s64 bad_seq;
    __s64 transit_at_ns; /* the last transit: arrival (CLOCK_MONOTONIC ns)... */
    __s64 transit_ts_ns; /* ...and RTP timestamp x 1e9 */
    __s64 not_received;
    __s64 expected_prior;
    __s64 received_prior;
    __u64 jitter_ns;     /* jitter in timestamp units x 1e9 */
    /* what left toward the other party */
    __s64 packets_out;
    __s64 bytes_out;
    __s64 send_errors;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(map_flags, BPF_F_NO_PREALLOC); /* memory as lanes come; freed entries are reused at once */
    __uint(max_entries, 65536);
    __type(key, struct lane_key);
    __type(value, struct lane);
} lanes SEC(".maps");

/* init_seq of RFC 3550 A.1: close the current run of sequence numbers, start one. */
static __always_inline void
restart_run(struct lane *l, __s64 seq)
{
    if (l->run_start >= 0) {
        l->expected_prior += l->cycles + l->max_seq - l->base_seq + 1;
        l->received_prior += l->packets_in - 1 - l->run_start - l->not_received;
    }
    l->run_start = l->packets_in - 1;
    l->base_seq = seq;
    l->max_seq = seq;
    l->cycles = 0;
    l->bad_seq = RTP_SEQ_MOD + 1;
    l->not_received = 0;
}

static __always_inline void
set_transit(struct lane *l, __u64 now, __s64 timestamp_ns)
{
    l->transit_at_ns = (__s64)now;
    l->transit_ts_ns = timestamp_ns;
}

/* StreamStats.update for one RTP packet of at least 12 octets (under the lane's lock). */
static __always_inline void
account(struct lane *l, const __u8 *p, __u32 len, __u64 now)
{
    __s64 seq = ((__s64)p[2] << 8) | p[3];
    __u32 timestamp = ((__u32)p[4] << 24) | ((__u32)p[5] << 16) | ((__u32)p[6] << 8) | p[7];
    __s64 ssrc = ((__s64)p[8] << 24) | ((__s64)p[9] << 16) | ((__s64)p[10] << 8) | p[11];
    __s64 timestamp_ns = (__s64)timestamp * (__s64)NS;
    l->packets_in += 1;
    l->bytes_in += len;
    l->last_ns = now;
    if (ssrc != l->ssrc) { /* a new SSRC (RFC 3550 8.2) */
        l->ssrc = ssrc;
        restart_run(l, seq);
        set_transit(l, now, timestamp_ns);
        return;
    }
    __s64 delta = (seq - l->max_seq) & 0xFFFF;
    if (delta < MAX_DROPOUT) {
        if (seq < l->max_seq)
            l->cycles += RTP_SEQ_MOD;
        l->max_seq = seq;
    }
    else if (delta <= RTP_SEQ_MOD - MAX_MISORDER) {
        if (seq != l->bad_seq) {
            l->bad_seq = (seq + 1) & 0xFFFF;
            l->not_received += 1;
            return;
        }
        restart_run(l, seq);
        set_transit(l, now, timestamp_ns);
        return;
    }
    /* D = (arrival - arrival') x rate - (timestamp - timestamp') */
    __s64 gap = (__s64)now - l->transit_at_ns;
    if (gap > MAX_GAP_NS)
        gap = MAX_GAP_NS;
    else if (gap < -MAX_GAP_NS)
        gap = -MAX_GAP_NS;
    __s64 signed_d = gap * (__s64)l->clock_rate - (timestamp_ns - l->transit_ts_ns);
    set_transit(l, now, timestamp_ns);
    __u64 d = signed_d < 0 ? (__u64)(-signed_d) : (__u64)signed_d;
    if (d > HALF_TIMESTAMP_SPACE_NS) { /* the 32-bit timestamp wrapped between the two */
        d %= TIMESTAMP_SPACE_NS;
        if (d > HALF_TIMESTAMP_SPACE_NS)
            d = TIMESTAMP_SPACE_NS - d;
    }
    /* J += (|D| - J) / 16 (RFC 3550 6.4.1, A.8) */
    if (d >= l->jitter_ns)
        l->jitter_ns += (d - l->jitter_ns) >> 4;
    else
        l->jitter_ns -= (l->jitter_ns - d) >> 4;
}

static __always_inline int
same_key(const struct lane_key *a, const struct lane_key *b)
{
    return a->local_addr == b->local_addr && a->remote_addr == b->remote_addr &&
           a->local_port == b->local_port && a->remote_port == b->remote_port;
}

/* Rewrite the packet to the route: the action that sends it on (TC_ACT_OK, TC_ACT_REDIRECT),
 * TC_ACT_SHOT when it cannot leave. */
static __always_inline int
forward(struct __sk_buff *skb, const struct route *r, const struct iphdr *ip_seen,
        const struct udphdr *udp_seen)
{
    __u32 old_saddr = ip_seen->saddr, old_daddr = ip_seen->daddr;
    __u16 old_sport = udp_seen->source, old_dport = udp_seen->dest;
    __u32 udp_csum_off = UDP_OFF + __builtin_offsetof(struct udphdr, check);
    __u32 ip_csum_off = IP_OFF + __builtin_offsetof(struct iphdr, check);
    int udp_has_csum = udp_seen->check != 0;

    /* addresses: the IPv4 header checksum, and the UDP one through its pseudo-header */
    if (bpf_l3_csum_replace(skb, ip_csum_off, old_saddr, r->src_addr, 4) ||
        bpf_l3_csum_replace(skb, ip_csum_off, old_daddr, r->dst_addr, 4))
        return TC_ACT_SHOT;
    if (udp_has_csum &&
        (bpf_l4_csum_replace(skb, udp_csum_off, old_saddr, r->src_addr,
                             BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4) ||
         bpf_l4_csum_replace(skb, udp_csum_off, old_daddr, r->dst_addr,
                             BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4) ||
         bpf_l4_csum_replace(skb, udp_csum_off, old_sport, r->src_port,
                             BPF_F_MARK_MANGLED_0 | 2) ||
         bpf_l4_csum_replace(skb, udp_csum_off, old_dport, r->dst_port,
                             BPF_F_MARK_MANGLED_0 | 2)))
        return TC_ACT_SHOT;
    if (bpf_skb_store_bytes(skb, IP_OFF + __builtin_offsetof(struct iphdr, saddr), &r->src_addr, 4, 0) ||
        bpf_skb_store_bytes(skb, IP_OFF + __builtin_offsetof(struct iphdr, daddr), &r->dst_addr, 4, 0) ||
        bpf_skb_store_bytes(skb, UDP_OFF + __builtin_offsetof(struct udphdr, source), &r->src_port, 2, 0) ||
        bpf_skb_store_bytes(skb, UDP_OFF + __builtin_offsetof(struct udphdr, dest), &r->dst_port, 2, 0))
        return TC_ACT_SHOT;

    if (r->local) /* a local sender's packet to a local address: on up this host's stack */
        return TC_ACT_OK;
    /* leaving this host: TTL as the gateway's own sendto sets it (the word it shares with
     * the protocol, for the checksum) */
    __u16 old_word = bpf_htons(((__u16)ip_seen->ttl << 8) | ip_seen->protocol);
    __u16 new_word = bpf_htons(((__u16)SENT_TTL << 8) | ip_seen->protocol);
    __u8 ttl = SENT_TTL;
    if (bpf_l3_csum_replace(skb, ip_csum_off, old_word, new_word, 2) ||
        bpf_skb_store_bytes(skb, IP_OFF + __builtin_offsetof(struct iphdr, ttl), &ttl, 1, 0))
        return TC_ACT_SHOT;
    /* out of the interface the route names, to the next hop the kernel resolves as it does
     * for the gateway's own sendto (a route or neighbour that fails there drops the packet
     * after it was counted as sent, as a sendto that returned would) */
    return bpf_redirect_neigh(r->ifindex, NULL, 0, 0);
}

SEC("tc")
int rtp_forward(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    if (skb->protocol != bpf_htons(ETH_P_IP))
        return TC_ACT_UNSPEC;
    /* a VLAN tag kept aside (it would leave with the packet), a GRO/GSO train of
     * datagrams, a frame for another host: the stack's */
    if (skb->vlan_present || skb->gso_segs > 1 || skb->pkt_type != 0 /* PACKET_HOST */)
        return TC_ACT_UNSPEC;
    if (data + PAYLOAD_OFF > data_end) {
        if (bpf_skb_pull_data(skb, PAYLOAD_OFF))
            return TC_ACT_UNSPEC;
        data = (void *)(long)skb->data;
        data_end = (void *)(long)skb->data_end;
        if (data + PAYLOAD_OFF > data_end)
            return TC_ACT_UNSPEC;
    }
    struct iphdr *ip = data + IP_OFF;
    if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
        return TC_ACT_UNSPEC;
    if (ip->frag_off & bpf_htons(0x3FFF)) /* a fragment: the stack reassembles it */
        return TC_ACT_UNSPEC;
    struct udphdr *udp = data + UDP_OFF;
    /* lengths that do not add up: the stack drops the packet, as it would without a lane */
    __u32 ip_len = bpf_ntohs(ip->tot_len);
    __u32 udp_len = bpf_ntohs(udp->len);
    if (ip_len < sizeof(struct iphdr) + sizeof(struct udphdr) || ETH_HLEN + ip_len > skb->len ||
        udp_len < sizeof(struct udphdr) || udp_len > ip_len - sizeof(struct iphdr))
        return TC_ACT_UNSPEC;
    struct lane_key key = {
        .local_addr = ip->daddr,
        .remote_addr = ip->saddr,
        .local_port = udp->dest,
        .remote_port = udp->source,
    };
    struct lane *l = bpf_map_lookup_elem(&lanes, &key);
    if (!l)
        return TC_ACT_UNSPEC;

    __u32 len = udp_len - sizeof(struct udphdr);
    __u8 head[12] = {};
    if (len == 0)
        return TC_ACT_SHOT;
    if (bpf_skb_load_bytes(skb, PAYLOAD_OFF, head, len < 12 ? (len < 2 ? 1 : 2) : 12))
        return TC_ACT_SHOT;
    int rtp = 0, rtcp = 0;
    if ((head[0] >> 6) != 2) {
        /* STUN, DTLS, ZRTP (RFC 7983): forwarded by the RTP route, not accounted */
    }
    else if (len < 2) {
        return TC_ACT_SHOT;
    }
    else if (head[1] > 191 && head[1] < 224) {
        rtcp = 1; /* RTCP on the RTP port (RFC 5761 4) */
    }
    else {
        rtp = 1;
    }

    struct iphdr ip_seen = *ip;
    struct udphdr udp_seen = *udp;
    struct route r;
    /* One critical section reads the routes and counts the packet as sent (so no
     * handover can take the lane between the send and its count); a send that fails
     * is corrected after. The arrival is stamped before the send (RtpReceiver.relay
     * stamps it after: microseconds apart). */
    __u64 now = bpf_ktime_get_ns();
    bpf_spin_lock(&l->lock);
    if (!same_key(&l->key, &key)) { /* the entry was freed and reused: not this flow's now */
        bpf_spin_unlock(&l->lock);
        return TC_ACT_UNSPEC;
    }
    /* both routes read from fixed offsets and the one wanted picked by a mask: a route
     * chosen by pointer (or by offset, as a compiler turns a branch) is arithmetic on a map
     * value pointer, which the verifier refuses without CAP_PERFMON; counts are added
     * unconditionally for the same reason */
    struct route rtp_route = l->rtp, rtcp_route = l->rtcp;
    __u32 pick = -(__u32)rtcp; /* all ones: the RTCP route */
    r.src_addr = (rtcp_route.src_addr & pick) | (rtp_route.src_addr & ~pick);
    r.dst_addr = (rtcp_route.dst_addr & pick) | (rtp_route.dst_addr & ~pick);
    r.src_port = (rtcp_route.src_port & pick) | (rtp_route.src_port & ~pick);
    r.dst_port = (rtcp_route.dst_port & pick) | (rtp_route.dst_port & ~pick);
    r.ifindex = (rtcp_route.ifindex & pick) | (rtp_route.ifindex & ~pick);
    r.local = (rtcp_route.local & pick) | (rtp_route.local & ~pick);
    __s64 counted_out = rtp && r.src_addr != 0;
    l->packets_out += counted_out;
    l->bytes_out += counted_out * len;
    if (rtp && len >= 12)
        account(l, head, len, now);
    bpf_spin_unlock(&l->lock);

    if (r.src_addr == 0)
        return TC_ACT_SHOT; /* no route: dropped, as the discard route drops it */
    int action = forward(skb, &r, &ip_seen, &udp_seen);
    if (action == TC_ACT_SHOT) { /* not sent after all */
        bpf_spin_lock(&l->lock);
        if (same_key(&l->key, &key)) {
            l->send_errors += 1;
            l->packets_out -= counted_out;
            l->bytes_out -= counted_out * len;
        }
        bpf_spin_unlock(&l->lock);
    }
    return action;
}

char LICENSE[] SEC("license") = "Proprietary"; /* no GPL-only helper is called */
