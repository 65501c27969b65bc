//! Integration tests: a real server on 127.0.0.1:0, a real HTTP client, a real chain.

mod client;
mod methods;
mod node;
mod protocol;
mod routes;
