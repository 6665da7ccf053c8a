//! Rollcall's classroom box as a library: the binary `edge-agent` is a thin shell over it, and tests
//! and benchmarks use the same code.

pub mod api;
pub mod attendance;
pub mod capture;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod enrolment;
pub mod roster;
pub mod store;
pub mod sync;
pub mod tui;
pub mod vision;
