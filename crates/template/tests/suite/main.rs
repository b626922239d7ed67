//! The one integration-test binary of `ferry-template` (one binary keeps linking cheap).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod cases;
mod performance;
mod properties;

use ferry_template::{FixedClock, MapVariables, Options};

/// The clock every test renders with: 2016-11-03 08:53:11.0946448 at UTC+10.
pub fn options() -> Options {
    Options::default().with_clock(FixedClock::parse("2016-11-03T08:53:11.0946448+10:00").unwrap())
}

pub fn vars(pairs: &[(&str, &str)]) -> MapVariables {
    pairs.iter().map(|&(k, v)| (k, v)).collect()
}
