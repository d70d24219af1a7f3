//! The connection every POP3 unit test runs on.

pub use mailtap_core::testing::Harness;

pub fn harness() -> Harness {
    Harness::new("192.168.0.4:26383", "212.227.15.166:110")
}
