//! Where the log goes: stderr (env_logger) for every command and for `mount -f`; syslog (and so
//! the journal) for the mount daemon once it is in the background, where stderr is
//! `/dev/null` and the warnings behind a tampered name or a corrupt chunk would be lost.
//! This is what gocryptfs does; `mount --nosyslog` keeps the old behaviour.
//!
//! One logger is installed for the whole process (the `log` facade takes only one), and the
//! daemon switches its sink once. The level filter is the same for both sinks (`RUST_LOG`,
//! default `warn`). Log lines never carry a secret, and plaintext names only at debug level.

use std::path::Path;
use std::sync::OnceLock;

/// The process's logger: env_logger's filter and stderr output, or syslog once switched.
struct SwitchableLogger {
    stderr: env_logger::Logger,
    syslog: OnceLock<syslog::BasicLogger>,
}

impl log::Log for SwitchableLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.stderr.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.stderr.matches(record) {
            return;
        }
        match self.syslog.get() {
            Some(s) => s.log(record),
            None => self.stderr.log(record),
        }
    }

    fn flush(&self) {
        match self.syslog.get() {
            Some(s) => s.flush(),
            None => self.stderr.flush(),
        }
    }
}

static LOGGER: OnceLock<&'static SwitchableLogger> = OnceLock::new();

/// Installs the process's logger, writing to stderr (`RUST_LOG` overrides the default
/// `warn`). Called once, first thing in `main`.
pub fn init() {
    let stderr = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,fuser::mnt=error"),
    )
    .format_timestamp(None)
    .build();
    let max = stderr.filter();
    let logger: &'static SwitchableLogger = Box::leak(Box::new(SwitchableLogger {
        stderr,
        syslog: OnceLock::new(),
    }));
    if LOGGER.set(logger).is_ok() && log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
}

/// Sends the log to syslog from now on: `/dev/log` (journald or a syslog daemon), or
/// `socket` when given (tests bind their own). Facility `daemon`, tag `cofferfs[PID]`.
/// When no syslog listens, says so on stderr (still the user's terminal at this point) and
/// keeps logging there.
pub fn switch_to_syslog(socket: Option<&Path>) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: "cofferfs".into(),
        pid: std::process::id(),
    };
    let connected = match socket {
        Some(p) => syslog::unix_custom(formatter, p),
        None => syslog::unix(formatter),
    };
    match connected {
        Ok(s) => {
            let _ = logger.syslog.set(syslog::BasicLogger::new(s));
        }
        Err(e) => log::warn!(
            "cannot reach syslog at {} ({e}): the daemon's warnings will be discarded (mount \
             with -f to see them on stderr)",
            socket.map_or("/dev/log".into(), |p| p.display().to_string())
        ),
    }
}
