//! Calibration: the measured-run dataset `memfabric-validator calibrate-runs`
//! writes, and fitting the simulator's free parameters to it.
//!
//! | module | owns |
//! |---|---|
//! | [`record`] | `run.json`, one measured run's parameters and headline |

pub mod record;
