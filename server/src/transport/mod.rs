//! The transports of the server: how clients reach the methods.

pub mod connection;
pub mod context;
pub mod dispatch;
pub mod http;
pub mod recent;
pub mod socket;
pub mod stdin;
pub mod tcp;
