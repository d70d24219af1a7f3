// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * mailtap_sockfilter: the eBPF socket filter of mailtap's AF_PACKET
 * capture, attached (SO_ATTACH_BPF) to every ring socket in place of the
 * classic `ret #snaplen` filter.
 *
 * For every packet the socket would receive it returns the snap length
 * (the kernel copies at most that many bytes into the ring), except for
 * the ordinary packets (no SYN, FIN or RST) of a connection in the
 * `mailtap_bypass` map: those are counted in the map and the filter
 * returns 0, so the kernel does not copy them into the ring at all. The
 * host is unaffected either way: an AF_PACKET socket is a tap.
 *
 * The key/value layout and semantics are those of mailtap_xdp.c (see
 * mailtap_bypass.h). Socket filters cannot read packet memory directly,
 * so headers are read with bpf_skb_load_bytes. An AF_PACKET SOCK_RAW
 * socket sees the frame from the Ethernet header; a VLAN tag the driver
 * stripped into skb->vlan_tci is not in the data, one left inline is, and
 * up to two inline tags are stepped over as in mailtap_xdp.c.
 *
 * Self-contained like mailtap_xdp.c: no system headers (see build.sh).
 */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

/* ---- kernel UAPI (include/uapi/linux/bpf.h) ---- */

/* The context; only passed on to bpf_skb_load_bytes. */
struct __sk_buff;

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
};

/* ---- libbpf conventions (bpf/bpf_helpers.h) ---- */

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name
#define __always_inline inline __attribute__((always_inline))

/* Helper ids from the kernel's enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_skb_load_bytes)(const struct __sk_buff *skb, __u32 offset, void *to,
				  __u32 len) = (void *)26;

#include "mailtap_bypass.h"

/* ---- protocol numbers ---- */

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_HOPOPTS 0
#define IPPROTO_TCP 6
#define IPPROTO_ROUTING 43
#define IPPROTO_FRAGMENT 44
#define IPPROTO_AH 51
#define IPPROTO_DSTOPTS 60
#define TCP_MIN_HLEN 20
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT 4

/* Used when the config map cannot be read (it always can once loaded). */
#define DEFAULT_SNAPLEN 65535

/* ---- maps (shared with crates/mailtap-capture/src/bypass.rs) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BYPASS_DEFAULT_ENTRIES);
	__type(key, struct bypass_key);
	__type(value, struct bypass_value);
} mailtap_bypass SEC(".maps");

struct mailtap_sfcfg {
	/* Bytes of a packet copied into the ring (the classic filter's
	 * `ret #snaplen`); written by the loader before any attach. */
	__u32 snaplen;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mailtap_sfcfg);
} mailtap_sfcfg SEC(".maps");

/* Per-CPU counters, one entry; the loader sums the CPUs. */
struct mailtap_sfstats {
	/* Packets of bypassed connections kept out of the rings. */
	__u64 bypassed_packets;
	/* Their IP bytes (as the map's ip_bytes). */
	__u64 bypassed_bytes;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mailtap_sfstats);
} mailtap_sfstats SEC(".maps");

char _license[] SEC("license") = "Dual BSD/GPL";

/* ---- parsing ---- */

static __always_inline __u16 be16(const __u8 *p)
{
	return (__u16)(((__u16)p[0] << 8) | p[1]);
}

static __always_inline __u32 be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

/* Fills the ports, sequence number, flags, window and payload length of `s` from
 * the TCP header at `off`, `l3len` bytes after the IP header's start.
 * 0 on success. */
static __always_inline int parse_tcp(const struct __sk_buff *skb, __u32 off, __u32 l3len,
				     struct tcp_seg *s)
{
	__u8 t[TCP_MIN_HLEN];
	__u32 hdrs;

	if (bpf_skb_load_bytes(skb, off, t, sizeof(t)) < 0)
		return -1;
	__builtin_memcpy(&s->key.sport, t, 2);
	__builtin_memcpy(&s->key.dport, t + 2, 2);
	s->seq = be32(t + 4);
	s->flags = t[13];
	s->window = ((__u16)t[14] << 8) | t[15];
	hdrs = l3len + (__u32)(t[12] >> 4) * 4;
	s->payload = s->ip_bytes > hdrs ? s->ip_bytes - hdrs : 0;
	return 0;
}

static __always_inline int parse_ipv4(const struct __sk_buff *skb, __u32 off, struct tcp_seg *s)
{
	__u8 h[20];
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
		return -1;
	if ((h[0] >> 4) != 4)
		return -1;
	ihl = (__u32)(h[0] & 0x0f) * 4;
	if (ihl < 20)
		return -1;
	/* Fragments are left alone, as in mailtap_xdp.c. */
	if ((h[6] & 0x20) || (be16(h + 6) & 0x1fff))
		return -1;
	if (h[9] != IPPROTO_TCP)
		return -1;
	s->key.family = 4;
	__builtin_memcpy(&s->key.saddr[0], h + 12, 4);
	__builtin_memcpy(&s->key.daddr[0], h + 16, 4);
	s->ip_bytes = be16(h + 2);
	return parse_tcp(skb, off + ihl, ihl, s);
}

static __always_inline int parse_ipv6(const struct __sk_buff *skb, __u32 off, struct tcp_seg *s)
{
	__u8 h[40];
	__u8 e[2];
	__u32 l3len = 40;
	__u8 nh;
	int i;

	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)) < 0)
		return -1;
	if ((h[0] >> 4) != 6)
		return -1;
	s->key.family = 6;
	__builtin_memcpy(s->key.saddr, h + 8, 16);
	__builtin_memcpy(s->key.daddr, h + 24, 16);
	s->ip_bytes = (__u32)be16(h + 4) + 40;
	nh = h[6];

#pragma clang loop unroll(full)
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		__u32 len;

		if (nh == IPPROTO_TCP)
			return parse_tcp(skb, off + l3len, l3len, s);
		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING &&
		    nh != IPPROTO_DSTOPTS && nh != IPPROTO_AH)
			return -1; /* not TCP, or a fragment */
		if (bpf_skb_load_bytes(skb, off + l3len, e, sizeof(e)) < 0)
			return -1;
		if (nh == IPPROTO_AH)
			len = ((__u32)e[1] + 2) * 4;
		else
			len = ((__u32)e[1] + 1) * 8;
		nh = e[0];
		l3len += len;
	}
	if (nh == IPPROTO_TCP)
		return parse_tcp(skb, off + l3len, l3len, s);
	return -1;
}

/* 0 when the frame is IPv4/IPv6 TCP (not a fragment) and `s` is filled. */
static __always_inline int parse(const struct __sk_buff *skb, struct tcp_seg *s)
{
	__u8 eth[ETH_HLEN];
	__u8 tag[4];
	__u32 off = ETH_HLEN;
	__u16 proto;
	int i;

	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)) < 0)
		return -1;
	proto = be16(eth + 12);

#pragma clang loop unroll(full)
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, off, tag, sizeof(tag)) < 0)
			return -1;
		proto = be16(tag + 2);
		off += 4;
	}

	if (proto == ETH_P_IP)
		return parse_ipv4(skb, off, s);
	if (proto == ETH_P_IPV6)
		return parse_ipv6(skb, off, s);
	return -1;
}

SEC("socket")
int mailtap_sockflt(struct __sk_buff *skb)
{
	__u32 zero = 0;
	const struct mailtap_sfcfg *cfg = bpf_map_lookup_elem(&mailtap_sfcfg, &zero);
	__u32 snaplen = cfg && cfg->snaplen ? cfg->snaplen : DEFAULT_SNAPLEN;
	struct mailtap_sfstats *st;
	struct bypass_value *b;
	struct tcp_seg s;

	/* The key is hashed as 40 bytes: everything not filled, zero. */
	__builtin_memset(&s, 0, sizeof(s));
	if (parse(skb, &s) < 0 || !bypassable(&s))
		return snaplen;
	b = bpf_map_lookup_elem(&mailtap_bypass, &s.key);
	if (!b)
		return snaplen;
	bypass_count(b, &s);
	st = bpf_map_lookup_elem(&mailtap_sfstats, &zero);
	if (st) {
		st->bypassed_packets++;
		st->bypassed_bytes += s.ip_bytes;
	}
	/* Not copied into the ring (and not counted as a ring drop). */
	return 0;
}
