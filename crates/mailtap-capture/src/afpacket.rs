//! AF_PACKET TPACKET_V3 receive rings (not yet written).
