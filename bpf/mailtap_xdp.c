// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * mailtap_xdp: the XDP steering program of mailtap's AF_XDP capture.
 *
 * It redirects to the AF_XDP socket of the receiving queue only the traffic
 * the sensor wants -- IPv4/IPv6 TCP whose source or destination port is in
 * the configured mail-port set, or any TCP when dynamic protocol detection
 * is on -- and passes everything else to the kernel, so that the host (a
 * node running the DaemonSet) keeps its network. A wanted packet on a queue
 * that has no socket (none registered yet, or the sensor crashed and the
 * kernel removed the socket from the map) is passed too: the XDP_PASS
 * fallback of bpf_redirect_map.
 *
 * Kernel bypass: a wanted packet of a connection direction the sensor put
 * into mailtap_bypass (after its TLS handshake), without SYN, FIN or RST,
 * is counted in the map and dropped or passed to the host instead of
 * redirected (mailtap_bypass.h, README.md).
 *
 * Self-contained on purpose: no kernel or libbpf/libxdp headers are
 * included, so the object built from this file depends only on the
 * compiler, not on which linux-libc-dev/libbpf-dev/libxdp-dev the build
 * host has (see build.sh --check). The few definitions needed are below;
 * they are kernel UAPI (stable ABI) and libbpf/libxdp conventions.
 *
 * Build: bpf/build.sh (see bpf/README.md).
 */

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

/* ---- kernel UAPI (include/uapi/linux/bpf.h) ---- */

/* The name must stay "xdp_md": when libxdp runs us behind its dispatcher
 * (freplace), the kernel matches the context argument by struct name. The
 * layout is the kernel's; we only read the fields up to rx_queue_index. */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

/* An enum, not #defines: XDP_RUN_CONFIG below uses XDP_PASS as a struct
 * member name, which must not be macro-expanded (libxdp reads it by name). */
enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_XSKMAP = 17,
};

/* ---- libbpf conventions (bpf/bpf_helpers.h) ---- */

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name
#define __always_inline inline __attribute__((always_inline))

/* Helper ids from the kernel's enum bpf_func_id. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

/* The bypass table's key and value layouts and update (shared with
 * mailtap_sockfilter.c). */
#include "mailtap_bypass.h"

/* ---- libxdp conventions (xdp/xdp_helpers.h) ---- */

#define _CONCAT(x, y) x##y
#define XDP_RUN_CONFIG(f) _CONCAT(_, f) SEC(".xdp_run_config")

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

/* VLAN tags we step over (802.1Q, and 802.1ad QinQ outer + inner). */
#define MAX_VLAN_TAGS 2
/* IPv6 extension headers we walk before giving up (verifier-bounded). */
#define MAX_IPV6_EXT 4

/* ---- maps (shared with crates/mailtap-capture/src/steering.rs) ---- */

/* AF_XDP sockets by receive queue. The loader resizes it to the
 * interface's queue count before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, 256);
} xsks_map SEC(".maps");

/* The wanted TCP ports as a 65536-bit bitmap in one array entry: port p is
 * wanted when bit (p & 7) of byte (p >> 3) is set. One lookup per packet
 * serves both ports, and the map is 8 KiB instead of the 512 KiB an array
 * of 65536 one-byte values would take (array values are 8-byte aligned). */
#define PORT_BITMAP_BYTES (65536 / 8)
struct port_bitmap {
	__u8 bits[PORT_BITMAP_BYTES];
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_bitmap);
} mail_ports SEC(".maps");

struct mailtap_cfg {
	/* Non-zero: every TCP segment is wanted (dynamic protocol detection). */
	__u32 all_tcp;
	/* What to do with a bypassed packet: XDP_DROP (a capture-only
	 * interface: mirror or tap port) or XDP_PASS (an interface carrying
	 * the host's own traffic). 0 (or anything else): bypass off, the
	 * mailtap_bypass map is not consulted. */
	__u32 bypass_action;
};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mailtap_cfg);
} mailtap_cfg SEC(".maps");

/* Per-CPU counters, one entry; the loader sums the CPUs. Field order is
 * the ABI with steering.rs. */
struct mailtap_stats {
	/* Wanted and redirected to the queue's AF_XDP socket. */
	__u64 redirected;
	/* Not IPv4/IPv6 TCP (ARP, ICMP, UDP, ESP, ...): passed. */
	__u64 passed_not_tcp;
	/* TCP, but neither port is wanted: passed. */
	__u64 passed_other_port;
	/* IP fragment: passed (see below). */
	__u64 passed_fragment;
	/* Truncated or malformed headers, or more IPv6 extension headers
	 * than we walk: passed, the kernel decides. */
	__u64 passed_malformed;
	/* Wanted, but the queue has no socket in xsks_map: passed. */
	__u64 passed_no_socket;
	/* Wanted, but its connection is in mailtap_bypass (and it has no
	 * SYN, FIN or RST): counted there and dropped or passed as
	 * mailtap_cfg.bypass_action says. */
	__u64 bypassed_packets;
	/* Their IP bytes (as the map's ip_bytes). */
	__u64 bypassed_bytes;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mailtap_stats);
} mailtap_stats SEC(".maps");

/* Connections whose ordinary packets are kept from the sensor (see
 * mailtap_bypass.h): one entry per direction. The loader sets max_entries
 * (two per connection) before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BYPASS_DEFAULT_ENTRIES);
	__type(key, struct bypass_key);
	__type(value, struct bypass_value);
} mailtap_bypass SEC(".maps");

/* libxdp's dispatcher: run at the priority of libxdp's own AF_XDP program,
 * and go on to the next program on XDP_PASS, so programs chained after us
 * still see the traffic we leave to the kernel. */
struct {
	__uint(priority, 20);
	__uint(XDP_PASS, 1);
} XDP_RUN_CONFIG(mailtap_xdp);

char _license[] SEC("license") = "Dual BSD/GPL";

/* ---- parsing ---- */

enum verdict {
	V_WANTED,
	V_NOT_TCP,
	V_OTHER_PORT,
	V_FRAGMENT,
	V_MALFORMED,
};

/* Big-endian reads byte by byte: independent of the target's byte order,
 * and no alignment assumptions about the packet. */
static __always_inline __u16 be16(const __u8 *p)
{
	return (__u16)(((__u16)p[0] << 8) | p[1]);
}

static __always_inline __u32 be32(const __u8 *p)
{
	return ((__u32)p[0] << 24) | ((__u32)p[1] << 16) | ((__u32)p[2] << 8) | p[3];
}

/* Copies 4 bytes as they are (network byte order stays). */
static __always_inline __u32 raw32(const __u8 *p)
{
	__u32 v;

	__builtin_memcpy(&v, p, 4);
	return v;
}

static __always_inline int port_wanted(const struct port_bitmap *b, __u16 port)
{
	/* port >> 3 < 8192 by type; the mask makes that visible to the
	 * verifier. */
	return (b->bits[(port >> 3) & (PORT_BITMAP_BYTES - 1)] >> (port & 7)) & 1;
}

/*
 * Decides on a TCP segment starting at l4, `l3len` bytes after the start
 * of the IP header; on V_WANTED fills the ports, flags, sequence number
 * and payload length of `s` (the caller filled the addresses and
 * ip_bytes).
 */
static __always_inline enum verdict tcp_verdict(const __u8 *l4, const void *end, __u32 l3len,
						 const struct mailtap_cfg *cfg, struct tcp_seg *s)
{
	__u32 zero = 0;
	const struct port_bitmap *ports;
	__u16 sport, dport;
	__u32 hdrs;

	if ((const void *)(l4 + TCP_MIN_HLEN) > end)
		return V_MALFORMED;
	sport = be16(l4);
	dport = be16(l4 + 2);
	if (!(cfg && cfg->all_tcp)) {
		ports = bpf_map_lookup_elem(&mail_ports, &zero);
		if (!ports)
			return V_OTHER_PORT;
		if (!port_wanted(ports, sport) && !port_wanted(ports, dport))
			return V_OTHER_PORT;
	}
	/* Network byte order in the key, as in the packet. */
	__builtin_memcpy(&s->key.sport, l4, 2);
	__builtin_memcpy(&s->key.dport, l4 + 2, 2);
	s->seq = be32(l4 + 4);
	s->flags = l4[13];
	s->window = ((__u16)l4[14] << 8) | l4[15];
	/* Payload: IP length minus the IP and TCP headers; 0 when the
	 * lengths are inconsistent (the sensor will judge that packet). */
	hdrs = l3len + (__u32)(l4[12] >> 4) * 4;
	s->payload = s->ip_bytes > hdrs ? s->ip_bytes - hdrs : 0;
	return V_WANTED;
}

static __always_inline enum verdict ipv4_verdict(const __u8 *ip, const void *end,
						  const struct mailtap_cfg *cfg, struct tcp_seg *s)
{
	__u32 ihl;

	if ((const void *)(ip + 20) > end)
		return V_MALFORMED;
	if ((ip[0] >> 4) != 4)
		return V_MALFORMED;
	ihl = (__u32)(ip[0] & 0x0f) * 4;
	if (ihl < 20)
		return V_MALFORMED;
	/* Fragments: only the first carries the TCP ports, and the kernel
	 * reassembles them anyway; redirecting some pieces of a datagram to
	 * the sensor and the rest to the kernel would break it for both. So
	 * every fragment (MF set or a non-zero offset) goes to the kernel. */
	if ((ip[6] & 0x20) || (be16(ip + 6) & 0x1fff))
		return V_FRAGMENT;
	if (ip[9] != IPPROTO_TCP)
		return V_NOT_TCP;
	s->key.family = 4;
	s->key.saddr[0] = raw32(ip + 12);
	s->key.daddr[0] = raw32(ip + 16);
	s->ip_bytes = be16(ip + 2);
	/* IHL options honoured: ihl is 20..60, a bounded variable offset. */
	return tcp_verdict(ip + ihl, end, ihl, cfg, s);
}

static __always_inline enum verdict ipv6_verdict(const __u8 *ip, const void *end,
						  const struct mailtap_cfg *cfg, struct tcp_seg *s)
{
	const __u8 *p;
	__u32 off = 40;
	__u8 nh;
	int i;

	if ((const void *)(ip + 40) > end)
		return V_MALFORMED;
	if ((ip[0] >> 4) != 6)
		return V_MALFORMED;
	s->key.family = 6;
#pragma clang loop unroll(full)
	for (i = 0; i < 4; i++) {
		s->key.saddr[i] = raw32(ip + 8 + 4 * i);
		s->key.daddr[i] = raw32(ip + 24 + 4 * i);
	}
	s->ip_bytes = (__u32)be16(ip + 4) + 40;
	nh = ip[6];
	p = ip + 40;

#pragma clang loop unroll(full)
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		__u32 len;

		if (nh == IPPROTO_TCP)
			return tcp_verdict(p, end, off, cfg, s);
		/* A fragment header: same reasoning as IPv4 fragments. */
		if (nh == IPPROTO_FRAGMENT)
			return V_FRAGMENT;
		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING &&
		    nh != IPPROTO_DSTOPTS && nh != IPPROTO_AH)
			return V_NOT_TCP;
		if ((const void *)(p + 2) > end)
			return V_MALFORMED;
		/* AH counts its length in 4-byte units minus 2, the others in
		 * 8-byte units not counting the first 8. */
		if (nh == IPPROTO_AH)
			len = ((__u32)p[1] + 2) * 4;
		else
			len = ((__u32)p[1] + 1) * 8;
		nh = p[0];
		p += len;
		off += len;
	}
	if (nh == IPPROTO_TCP)
		return tcp_verdict(p, end, off, cfg, s);
	if (nh == IPPROTO_FRAGMENT)
		return V_FRAGMENT;
	/* Still inside an extension chain longer than we walk. */
	return V_MALFORMED;
}

static __always_inline enum verdict packet_verdict(const struct xdp_md *ctx,
						   const struct mailtap_cfg *cfg, struct tcp_seg *s)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const void *end = (const void *)(long)ctx->data_end;
	const __u8 *p;
	__u16 proto;
	int i;

	if ((const void *)(data + ETH_HLEN) > end)
		return V_MALFORMED;
	proto = be16(data + 12);
	p = data + ETH_HLEN;

#pragma clang loop unroll(full)
	for (i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((const void *)(p + 4) > end)
			return V_MALFORMED;
		proto = be16(p + 2);
		p += 4;
	}

	if (proto == ETH_P_IP)
		return ipv4_verdict(p, end, cfg, s);
	if (proto == ETH_P_IPV6)
		return ipv6_verdict(p, end, cfg, s);
	/* ARP, LLDP, a third VLAN tag, ...: not ours. */
	return V_NOT_TCP;
}

SEC("xdp")
int mailtap_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct mailtap_stats *st = bpf_map_lookup_elem(&mailtap_stats, &zero);
	const struct mailtap_cfg *cfg = bpf_map_lookup_elem(&mailtap_cfg, &zero);
	struct tcp_seg s;
	enum verdict v;
	long act;

	/* The key is hashed as 40 bytes: everything not filled, zero. */
	__builtin_memset(&s, 0, sizeof(s));
	v = packet_verdict(ctx, cfg, &s);
	if (v != V_WANTED) {
		if (st) {
			if (v == V_NOT_TCP)
				st->passed_not_tcp++;
			else if (v == V_OTHER_PORT)
				st->passed_other_port++;
			else if (v == V_FRAGMENT)
				st->passed_fragment++;
			else
				st->passed_malformed++;
		}
		return XDP_PASS;
	}

	/* A bypassed connection: its ordinary packets are counted in the map
	 * and never reach the sensor; SYN, FIN and RST still do. */
	if (cfg && (cfg->bypass_action == XDP_DROP || cfg->bypass_action == XDP_PASS) &&
	    bypassable(&s)) {
		struct bypass_value *b = bpf_map_lookup_elem(&mailtap_bypass, &s.key);

		if (b) {
			bypass_count(b, &s);
			if (st) {
				st->bypassed_packets++;
				st->bypassed_bytes += s.ip_bytes;
			}
			return cfg->bypass_action == XDP_DROP ? XDP_DROP : XDP_PASS;
		}
	}

	/* The socket bound to this queue, or XDP_PASS when the slot is empty
	 * (no socket registered, or the sensor exited and the kernel removed
	 * its socket): the kernel keeps the traffic rather than losing it. */
	act = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
	if (st) {
		if (act == XDP_REDIRECT)
			st->redirected++;
		else
			st->passed_no_socket++;
	}
	return (int)act;
}
