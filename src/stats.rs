//! Counters, and the one line that reports them.
//!
//! The loop bumps these as things happen (`event_loop.rs`); the stats timer
//! logs [`Stats::line`] every `--stats-interval`, and once more at shutdown.
//! Counting is a few integer adds per event: no clock reads, no syscalls.

/// Totals since the server started.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted and served (rejected ones not included).
    pub accepted: u64,
    /// Connections turned away because the server was full.
    pub rejected: u64,
    /// Connections closed by the idle timeout.
    pub timed_out: u64,
    /// Receivers disconnected for not reading what others sent them.
    pub slow_consumers: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
}

impl Stats {
    /// The report, given how many connections are open now:
    /// `connections total=3 active=1 rejected=0 timed_out=1 slow_consumers=0
    /// bytes_in=10 bytes_out=10` (on one line), with `tls_failures=N` before
    /// the bytes on a TLS listener. Bytes are application bytes: TLS records
    /// and handshakes are not counted.
    pub fn line(&self, active: usize, tls: bool) -> String {
        let tls = if tls {
            format!("tls_failures={} ", self.tls_failures)
        } else {
            String::new()
        };
        format!(
            "connections total={} active={} rejected={} timed_out={} slow_consumers={} \
             {tls}bytes_in={} bytes_out={}",
            self.accepted,
            active,
            self.rejected,
            self.timed_out,
            self.slow_consumers,
            self.bytes_in,
            self.bytes_out
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_names_every_counter() {
        let s = Stats {
            accepted: 7,
            rejected: 1,
            timed_out: 2,
            slow_consumers: 3,
            tls_failures: 4,
            bytes_in: 300,
            bytes_out: 299,
        };
        assert!(s.line(4, true).contains(" tls_failures=4 bytes_in=300"));
        assert_eq!(
            s.line(4, false),
            "connections total=7 active=4 rejected=1 timed_out=2 slow_consumers=3 \
             bytes_in=300 bytes_out=299"
        );
    }
}
