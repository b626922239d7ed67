//! Packages: file names (`PackageId.Version.ext`) and formats, safe extraction shared by every
//! place that unpacks an archive, and the pure file transformations of the Deploy a package
//! step (substitute variables in files, structured configuration variables).
//!
//! Architecture invariant: extraction never writes, creates directories, changes modes or
//! follows links outside the target directory, and enforces its limits before writing.

pub mod archive;
pub mod filename;
pub mod structured;
pub mod substitute;
