//! Creating the scene over REST (the test kit's, shared with the
//! integration tests: a host, a recipe, a live session, and guest tokens for
//! viewers) and reading the server's footprint from `/proc`.

pub use simmer_testkit::rest::{guest_token, live_session, post, Scene};

/// Resident memory of a process, in KiB (Linux `/proc`).
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// A line of `/proc/PID/status` given in KiB: `VmRSS`, `RssAnon`, ...
pub fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let pid = pid?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// How many files (sockets included) a process has open.
pub fn open_fds(pid: Option<u32>) -> Option<usize> {
    Some(
        std::fs::read_dir(format!("/proc/{}/fd", pid?))
            .ok()?
            .count(),
    )
}

/// Wall-clock time in microseconds since the Unix epoch: the test kit's,
/// so the media peers' stamps and the load tool's compare.
pub use simmer_testkit::now_us;

/// CPU seconds a process has used (user + system), from `/proc`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ).
    Some((utime + stime) / 100.0)
}

/// CPU used by the load tool and the server over a stretch of wall time:
/// the tool must use less than the server for the numbers to be the
/// server's.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    wall: std::time::Instant,
    tool: Option<f64>,
    server: Option<f64>,
    server_pid: Option<u32>,
}

impl CpuWindow {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            wall: std::time::Instant::now(),
            tool: cpu_seconds(Some(std::process::id())),
            server: cpu_seconds(server_pid),
            server_pid,
        }
    }

    /// "load tool 1.2 s CPU in 10.0 s = 12% of a core; server 5.0 s = 50%
    /// of a core" (user + system time).
    pub fn report(&self) -> String {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let used = |before: Option<f64>, pid: Option<u32>| Some(cpu_seconds(pid)? - before?);
        let mut out = match used(self.tool, Some(std::process::id())) {
            Some(s) => format!(
                "load tool {s:.2} s CPU in {wall:.1} s = {:.0}% of a core",
                100.0 * s / wall
            ),
            None => format!("load tool CPU unknown in {wall:.1} s"),
        };
        if let Some(s) = used(self.server, self.server_pid) {
            out += &format!("; server {s:.2} s = {:.0}% of a core", 100.0 * s / wall);
        }
        out
    }
}
