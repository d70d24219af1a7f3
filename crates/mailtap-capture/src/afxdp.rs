//! AF_XDP receive queues (not yet written).
