//! The connection every SMTP unit test runs on.

pub use mailtap_core::testing::Harness;

pub fn harness() -> Harness {
    Harness::new("10.10.1.4:1470", "74.53.140.153:25")
}
