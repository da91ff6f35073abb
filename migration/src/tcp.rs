//! Throughput bounds of TCP streams on long paths.
//!
//! A single TCP stream cannot carry more than one window per round trip, and on
//! a lossy path its congestion window settles where Mathis et al. (1997, "The
//! macroscopic behavior of the TCP congestion avoidance algorithm") put it:
//! `rate <= MSS * C / (RTT * sqrt(p))` with `C = sqrt(3/2)`. A migration with
//! `n` parallel streams (QEMU multifd) gets `n` times the per-stream bound; the
//! links it crosses still bound the total (see the flow solver).

use crate::units::{Bytes, BytesPerSecond, Nanos};

/// Mathis constant `C = sqrt(3/2)` for periodic loss with delayed ACKs off.
pub const MATHIS_C: f64 = 1.224_744_871_391_589;

/// Default receive window: Linux's `net.ipv4.tcp_rmem` maximum is 6 MiB, of
/// which about two thirds is advertised as window with the default
/// `tcp_adv_win_scale`; 4 MiB is used as the effective window.
pub const DEFAULT_TCP_WINDOW: Bytes = Bytes(4 << 20);

/// Default maximum segment size: a 1500-byte MTU minus IPv4 (20), TCP (20) and
/// timestamp option (12) headers.
pub const DEFAULT_MSS: Bytes = Bytes(1448);

/// What bounds a stream's rate when the links do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpLimit {
    /// One window per round trip.
    Window,
    /// Mathis loss bound.
    Loss,
    /// Neither applies (zero RTT and no loss).
    None,
}

/// The bound on one TCP stream over a path with round-trip time `rtt` and loss
/// probability `loss`, and which of the two bounds it is.
pub fn stream_cap(rtt: Nanos, loss: f64, window: Bytes, mss: Bytes) -> (BytesPerSecond, TcpLimit) {
    let rtt_s = rtt.as_secs_f64();
    if rtt_s <= 0.0 {
        return (BytesPerSecond(f64::INFINITY), TcpLimit::None);
    }
    let window_cap = window.0 as f64 / rtt_s;
    let loss_cap = if loss > 0.0 { mss.0 as f64 * MATHIS_C / (rtt_s * loss.sqrt()) } else { f64::INFINITY };
    if loss_cap < window_cap {
        (BytesPerSecond(loss_cap), TcpLimit::Loss)
    } else {
        (BytesPerSecond(window_cap), TcpLimit::Window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bound_is_window_over_rtt() {
        let (cap, lim) = stream_cap(Nanos::from_millis(80), 0.0, Bytes(4 << 20), DEFAULT_MSS);
        assert_eq!(lim, TcpLimit::Window);
        assert!((cap.0 - (4u64 << 20) as f64 / 0.08).abs() < 1e-6);
    }

    #[test]
    fn mathis_bound_on_lossy_paths() {
        // 1% loss, 50 ms RTT: 1448 * 1.2247 / (0.05 * 0.1) = 354.7 kB/s, far below the window bound.
        let (cap, lim) = stream_cap(Nanos::from_millis(50), 0.01, DEFAULT_TCP_WINDOW, DEFAULT_MSS);
        assert_eq!(lim, TcpLimit::Loss);
        assert!((cap.0 - 1448.0 * MATHIS_C / 0.005).abs() < 1e-6);
    }

    #[test]
    fn no_bound_without_rtt() {
        let (cap, lim) = stream_cap(Nanos(0), 0.0, DEFAULT_TCP_WINDOW, DEFAULT_MSS);
        assert!(cap.0.is_infinite());
        assert_eq!(lim, TcpLimit::None);
    }
}
