//! The XDP steering program (not yet written).
