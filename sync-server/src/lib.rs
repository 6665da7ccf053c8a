//! Rollcall's central sync server as a library: its configuration, the `Store` that keeps every
//! school's roster, templates and attendance (embedded SQLite or MongoDB), and the HTTP API.

pub mod api;
pub mod config;
pub mod demo;
pub mod domain;
pub mod ml_client;
pub mod notify;
pub mod store;
pub mod web;

pub use config::{Config, ConfigError};
