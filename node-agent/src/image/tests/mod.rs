//! End-to-end tests of the image store over real archives built in temporary directories.

mod failures;
pub(crate) mod fixtures;
mod formats;
mod refs;
mod rootfs;
mod security;
