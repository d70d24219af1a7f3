// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * mailtap_bypass.h: the bypass table shared by mailtap_xdp.c (AF_XDP) and
 * mailtap_sockfilter.c (AF_PACKET).
 *
 * Once a connection's TLS handshake is done, the worker that owns the flow
 * writes both directions of the connection into the `mailtap_bypass` hash
 * map (crates/mailtap-capture/src/bypass.rs). From then on the program
 * keeps that connection's ordinary packets (no SYN, FIN or RST) from user
 * space and counts them in the map instead; SYN, FIN and RST still go to
 * the sensor, which needs them for the connection's state. The worker
 * takes the counters (lookup and delete) when the connection ends.
 *
 * The layouts below are an ABI with bypass.rs (BypassKey::to_bytes and
 * the value decoding), which checks the key and value sizes at load time.
 *
 * Included after the includer has defined the __u8..__u64 types,
 * __always_inline and bpf_ktime_get_ns; no system header is included.
 */

#ifndef MAILTAP_BYPASS_H
#define MAILTAP_BYPASS_H

typedef int __s32;

/* TCP flag bits (byte 13 of the TCP header). */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* Default max_entries; the loaders set it (two entries per connection)
 * before loading. */
#define BYPASS_DEFAULT_ENTRIES 2

/*
 * One direction of a connection, as the packet travels: source and
 * destination as in the packet's headers. Ports and addresses are in
 * network byte order (copied from the packet as they are); IPv4 addresses
 * are in saddr[0]/daddr[0] with the rest zero; pad is zero. 40 bytes, no
 * implicit padding.
 */
struct bypass_key {
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
	__u16 sport;
	__u16 dport;
	__u32 saddr[4];
	__u32 daddr[4];
};

/*
 * What the program counted for one direction since the worker inserted it
 * (the worker inserts all-zero values). 48 bytes.
 */
struct bypass_value {
	/* Packets kept from user space. */
	__u64 packets;
	/* Their IP bytes: IPv4 total length, IPv6 payload length + 40 (what
	 * conn.log's *_ip_bytes count). */
	__u64 ip_bytes;
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the latest one. */
	__u64 last_seen_ns;
	/* The highest seq + payload length of a packet with payload,
	 * compared wrap-aware; valid when has_seq is 1. */
	__u32 seq_end;
	__u32 has_seq;
	/* Of `packets`, for conn.log's history (the letters d, a, w, t the
	 * sensor would have added had it seen them): packets with payload,
	 * pure ACKs (no payload, ACK set), packets advertising a zero window,
	 * and retransmissions (payload starting before seq_end, as the
	 * sensor's own bypassed streams judge it). */
	__u32 payload_packets;
	__u32 pure_acks;
	__u32 zero_windows;
	__u32 retransmissions;
};

/* A TCP segment the parser found: its direction's key and what the map
 * counts. */
struct tcp_seg {
	struct bypass_key key;
	__u32 ip_bytes;
	__u32 seq;
	__u32 payload;
	__u16 window;
	__u8 flags;
};

/* Whether a segment of a bypassed connection may be kept from user space:
 * not when it carries SYN, FIN or RST. */
static __always_inline int bypassable(const struct tcp_seg *s)
{
	return (s->flags & (TCP_SYN | TCP_FIN | TCP_RST)) == 0;
}

/*
 * Counts one segment in its direction's value. packets and ip_bytes are
 * atomic adds (the worker may read the value while we write it, and a
 * direction could in principle arrive on two CPUs); last_seen_ns and
 * seq_end are plain stores, which is enough because RSS (and AF_PACKET's
 * flow hash) keeps one direction of a connection on one queue and so on
 * one CPU: no two CPUs update the same value at once in practice, and a
 * rare race would only leave a slightly older time or end.
 */
static __always_inline void bypass_count(struct bypass_value *v, const struct tcp_seg *s)
{
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->ip_bytes, (__u64)s->ip_bytes);
	v->last_seen_ns = bpf_ktime_get_ns();
	if (s->window == 0)
		__sync_fetch_and_add(&v->zero_windows, 1);
	if (s->payload) {
		__u32 end = s->seq + s->payload;

		__sync_fetch_and_add(&v->payload_packets, 1);
		if (v->has_seq && (__s32)(s->seq - v->seq_end) < 0)
			__sync_fetch_and_add(&v->retransmissions, 1);
		if (!v->has_seq || (__s32)(end - v->seq_end) > 0) {
			v->seq_end = end;
			v->has_seq = 1;
		}
	} else if (s->flags & TCP_ACK) {
		__sync_fetch_and_add(&v->pure_acks, 1);
	}
}

#endif
