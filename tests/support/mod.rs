//! Test harness: a real origin on 127.0.0.1:0 that counts requests ([`origin`]; HTTPS with
//! certificates from [`origin_tls`]), apicache started in-process in front of it ([`proxy`]),
//! one request helper and shared assertions ([`client`]), bodies and codecs ([`body`]), the few
//! looks into apicache's internals ([`internals`]), and listener certificates with HTTPS
//! clients trusting them ([`certs`]); the binary run from a config file ([`binary`]); a real
//! redis-server and a relay that can cut a node off from it ([`redis_server`]).
#![allow(dead_code)]

pub mod binary;
pub mod body;
pub mod certs;
pub mod client;
pub mod internals;
pub mod origin;
pub mod origin_tls;
pub mod proxy;
pub mod redis_server;

// Every test binary uses a different part of the harness.
#[allow(unused_imports)]
pub use {
    binary::*, body::*, certs::*, client::*, internals::*, origin::*, origin_tls::*, proxy::*,
    redis_server::*,
};
