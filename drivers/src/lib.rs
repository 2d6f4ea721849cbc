//! `axon-drivers`: the drivers Axon ships, the plugins that touch the world.
//!
//! What is here now: the `echo` driver, which answers every request with its input. It
//! touches nothing, so it is the probe operators and tests use to measure the path through
//! a supervised actor (`POST /v1/echo`).
//!
//! Architecture invariant: a driver carries no policy. Whether and when it may act is
//! decided before a request reaches it; a driver only does what it is asked, inside the
//! limits of its host.

pub mod echo;
