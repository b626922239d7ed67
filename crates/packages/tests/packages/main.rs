//! Integration tests of ferry-packages, in one binary: the evil-archive corpus for zip and tar,
//! packing and hashing, and properties of names, versions and extraction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod corpus_tar;
mod corpus_zip;
mod filenames;
mod pack;
mod properties;
mod support;
mod versions;
