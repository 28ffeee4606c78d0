//! The gateway: Higress-shaped config in, an observable Pingora proxy out.
//! `docs/architecture.md` shows the data flow and which module imports which.

pub mod admin;
pub mod annotations;
pub mod atomic_file;
pub mod clock;
pub mod config_loop;
pub mod console;
pub mod controllers;
pub mod demo;
pub mod dns;
pub mod error;
pub mod filters;
#[doc(hidden)]
pub mod fuzzing;
pub mod http1;
pub mod model;
pub mod proxy;
pub mod redis;
pub mod registry;
pub mod resources;
pub mod server;
pub mod snapshot;
pub mod sources;
pub mod stats;
pub mod tracer;
pub mod translate;
pub mod validate;
pub mod wasm;
