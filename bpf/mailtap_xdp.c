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
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

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
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mailtap_stats);
} mailtap_stats SEC(".maps");

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

static __always_inline int port_wanted(const struct port_bitmap *b, __u16 port)
{
	/* port >> 3 < 8192 by type; the mask makes that visible to the
	 * verifier. */
	return (b->bits[(port >> 3) & (PORT_BITMAP_BYTES - 1)] >> (port & 7)) & 1;
}

/* Decides on a TCP segment starting at l4. */
static __always_inline enum verdict tcp_verdict(const __u8 *l4, const void *end)
{
	__u32 zero = 0;
	const struct mailtap_cfg *cfg;
	const struct port_bitmap *ports;
	__u16 sport, dport;

	if ((const void *)(l4 + TCP_MIN_HLEN) > end)
		return V_MALFORMED;
	cfg = bpf_map_lookup_elem(&mailtap_cfg, &zero);
	if (cfg && cfg->all_tcp)
		return V_WANTED;
	ports = bpf_map_lookup_elem(&mail_ports, &zero);
	if (!ports)
		return V_OTHER_PORT;
	sport = be16(l4);
	dport = be16(l4 + 2);
	if (port_wanted(ports, sport) || port_wanted(ports, dport))
		return V_WANTED;
	return V_OTHER_PORT;
}

static __always_inline enum verdict ipv4_verdict(const __u8 *ip, const void *end)
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
	/* IHL options honoured: ihl is 20..60, a bounded variable offset. */
	return tcp_verdict(ip + ihl, end);
}

static __always_inline enum verdict ipv6_verdict(const __u8 *ip, const void *end)
{
	const __u8 *p;
	__u8 nh;
	int i;

	if ((const void *)(ip + 40) > end)
		return V_MALFORMED;
	if ((ip[0] >> 4) != 6)
		return V_MALFORMED;
	nh = ip[6];
	p = ip + 40;

#pragma clang loop unroll(full)
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		__u32 len;

		if (nh == IPPROTO_TCP)
			return tcp_verdict(p, end);
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
	}
	if (nh == IPPROTO_TCP)
		return tcp_verdict(p, end);
	if (nh == IPPROTO_FRAGMENT)
		return V_FRAGMENT;
	/* Still inside an extension chain longer than we walk. */
	return V_MALFORMED;
}

static __always_inline enum verdict packet_verdict(const struct xdp_md *ctx)
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
		return ipv4_verdict(p, end);
	if (proto == ETH_P_IPV6)
		return ipv6_verdict(p, end);
	/* ARP, LLDP, a third VLAN tag, ...: not ours. */
	return V_NOT_TCP;
}

SEC("xdp")
int mailtap_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct mailtap_stats *st = bpf_map_lookup_elem(&mailtap_stats, &zero);
	enum verdict v = packet_verdict(ctx);
	long act;

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
