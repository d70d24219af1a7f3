//! Analyzer-level tests: byte streams fed as the engine would.
