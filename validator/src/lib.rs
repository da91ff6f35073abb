//! memfabric's validator: a small KVM VMM that runs workload guests, migrates
//! them live between two processes over TCP (optionally across an emulated
//! WAN link), and captures memory traces for the simulator.
//!
//! | module | owns |
//! |---|---|
//! | [`calibrate_runs`] | `calibrate-runs`: a matrix of live migrations kept as a calibration dataset |
//! | [`capture`] | trace capture: the snapshot and dirty pages of a running guest as a simulator trace, the `capture` subcommand |
//! | [`guest`] | the workload guest's image, its ABI with the VMM, its workload parameters |
//! | [`interrupt`] | Ctrl-C/SIGTERM handling for commands that clean up |
//! | [`kvm`] | the VM, guest RAM and dirty log, long-mode boot, the vCPU thread, vCPU state |
//! | [`machine`] | a booted guest: VM + running vCPU |
//! | [`migrate`] | live migration: wire protocol, source and destination VMMs, the `migrate` orchestrator, fault injection |
//! | [`results`] | the result folder in the simulator's schema |
//! | [`site`] | sites of several guests: gang migration, gang and site dedup against a shared index and content store |
//! | [`wan`] | the packet-level WAN emulator: site namespaces, TUN devices, the forwarding loop |

pub mod calibrate_runs;
pub mod capture;
pub mod guest;
pub mod interrupt;
pub mod kvm;
pub mod machine;
pub mod migrate;
pub mod results;
pub mod site;
pub mod wan;
