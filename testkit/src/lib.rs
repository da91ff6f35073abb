//! What the workspace's tests share, so that every crate's tests follow one
//! rule for their scratch folders and one for their fuzzing seed: a dev-only
//! crate (no crate depends on it outside `[dev-dependencies]`).
//!
//! - [`scratch`]: folders under the system's temporary directory named after
//!   the test and the test process, removed when the test's thread ends if
//!   no test of the process has failed (a failure's files stay, to be looked
//!   at), and a listing of what a folder holds.
//! - [`fuzz`]: the proptest configuration of every property-based fuzz test
//!   (cases and seed from the environment, a fixed seed by default).

pub mod fuzz;
pub mod scratch;
