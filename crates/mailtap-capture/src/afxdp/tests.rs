use super::*;

/// 1 Gbit/s of 143-byte frames plus 20 bytes of preamble and gap.
const SMALL_FRAMES_PER_SEC_AT_1G: f64 = 1e9 / ((143.0 + 20.0) * 8.0);

#[test]
fn defaults_absorb_50ms_of_small_frames_at_1g() {
    let c = XdpQueueConfig::default();
    c.validate().unwrap();
    let need = (SMALL_FRAMES_PER_SEC_AT_1G * 0.050).ceil() as u32;
    assert_eq!(need, 38_344);
    // One default batch (256 packets) in the worker's hands.
    let absorbed = c.burst_packets(256);
    assert!(absorbed >= need, "{absorbed} < {need}");
    assert_eq!(c.umem_bytes(), 128 << 20);
    assert_eq!(c.busy_poll, BusyPoll::Off);
}

#[test]
fn validation_names_the_setting() {
    let bad = |f: &dyn Fn(&mut XdpQueueConfig), key: &str| {
        let mut c = XdpQueueConfig::default();
        f(&mut c);
        let e = c.validate().unwrap_err();
        assert!(e.contains(key), "{e} should name {key}");
    };
    bad(&|c| c.rx_ring = 1000, "xdp_rx_ring");
    bad(&|c| c.rx_ring = 32, "xdp_rx_ring");
    bad(&|c| c.fill_ring = MAX_RING * 2, "xdp_fill_ring");
    bad(&|c| c.frame_size = 1024, "xdp_frame_size");
    bad(&|c| c.frame_count = 1024, "xdp_frame_count");
    bad(&|c| c.busy_poll_usecs = 0, "xdp_busy_poll_usecs");
    bad(&|c| c.busy_poll_budget = 70_000, "xdp_busy_poll_budget");
    let small = XdpQueueConfig {
        frame_count: 4096,
        rx_ring: 2048,
        fill_ring: 2048,
        ..Default::default()
    };
    small.validate().unwrap();
    // The fill ring, not the extra frames, bounds what a stall absorbs.
    assert_eq!(small.burst_packets(256), 2048);
}

#[test]
fn busy_poll_parses() {
    assert_eq!("off".parse::<BusyPoll>(), Ok(BusyPoll::Off));
    assert_eq!("auto".parse::<BusyPoll>(), Ok(BusyPoll::Auto));
    assert_eq!("on".parse::<BusyPoll>(), Ok(BusyPoll::On));
    assert!("yes".parse::<BusyPoll>().unwrap_err().contains("auto"));
}

#[test]
fn memlock_error_names_the_limit_and_the_settings() {
    let c = XdpQueueConfig::default();
    let e = CaptureError::new(
        "AF_XDP socket on eth1 queue 0: creating the UMEM (128 MiB)",
        io::Error::from_raw_os_error(libc::ENOBUFS),
    )
    .with_hint(memlock_hint(&c, Some(8 << 20)));
    let s = e.to_string();
    for want in [
        "RLIMIT_MEMLOCK is 8 MiB",
        "live.xdp_frame_count (65536)",
        "live.xdp_frame_size (2048)",
        "= 128 MiB",
        "CAP_IPC_LOCK",
        "LimitMEMLOCK",
    ] {
        assert!(s.contains(want), "{s:?} lacks {want:?}");
    }
    // The specific hint replaces the generic one.
    assert_eq!(s.matches("locked memory").count(), 1, "{s}");
}
