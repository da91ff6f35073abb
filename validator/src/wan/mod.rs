//! The packet-level WAN emulator (being built).
