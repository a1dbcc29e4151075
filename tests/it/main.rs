//! The integration tests: one binary (each binary links the whole crate), a module per area.
//! Each test starts what it needs: a real server on a real socket, a real SQLite file, a real
//! `redis-server`, real child processes.

#![cfg(feature = "ssr")]

mod cli;
mod cluster;
mod cluster_script;
mod common;
mod disk_full;
mod events_route;
mod faults;
mod half_open;
mod health;
mod hostile;
mod limits;
mod logs;
mod owner_stream;
mod ownership;
mod pages;
mod rest_api;
mod restart;
mod schemathesis;
mod security;
mod slow_reader;
mod startup;
mod stream_connections;
