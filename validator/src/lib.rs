//! memfabric's validator: a small KVM VMM that runs workload guests, migrates
//! them live between two processes over TCP (optionally across an emulated
//! WAN link), and captures memory traces for the simulator.
//!
//! | module | owns |
//! |---|---|
//! | [`wan`] | the packet-level WAN emulator: site namespaces, TUN devices, the forwarding loop |
pub mod wan;
