//! Registry tests: a real docker-registry on loopback (push, pull, missing layers only,
//! concurrent pulls, corrupted blobs, htpasswd, TLS) and a small fake registry for the token
//! flow, redirects, indexes and overlapping downloads.

mod auth;
mod corrupt;
mod cross_process;
mod dedup;
mod fake;
mod images;
mod pull_push;
mod server;
mod tls;
