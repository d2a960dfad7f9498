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
        if is_reply_nobody_waits_for(record) {
            let demoted = log::Record::builder()
                .args(*record.args())
                .level(log::Level::Debug)
                .target(record.target())
                .build();
            return self.emit(&demoted);
        }
        self.emit(record);
    }

    fn flush(&self) {
        match self.syslog.get() {
            Some(s) => s.flush(),
            None => self.stderr.flush(),
        }
    }
}

impl SwitchableLogger {
    fn emit(&self, record: &log::Record) {
        if !self.stderr.matches(record) {
            return;
        }
        match self.syslog.get() {
            Some(s) => log::Log::log(s, record),
            None => log::Log::log(&self.stderr, record),
        }
    }
}

/// fuser logs an error when the kernel refuses a reply with `ENOENT`: the request it answers
/// is no longer waited for, because it was interrupted or because an unmount ended the
/// connection while it was being served (the RELEASE of a file closed just before the
/// unmount). Nothing is lost by it, and an error line at every such unmount would teach users
/// to ignore the log, so it is logged at debug level instead.
fn is_reply_nobody_waits_for(record: &log::Record) -> bool {
    record.level() == log::Level::Error
        && record.target() == "fuser::reply"
        && record.args().to_string().ends_with("(os error 2)")
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

#[cfg(test)]
mod tests {
    use super::is_reply_nobody_waits_for;

    fn record_is_late_reply(target: &str, level: log::Level, text: &str) -> bool {
        is_reply_nobody_waits_for(
            &log::Record::builder()
                .args(format_args!("{text}"))
                .level(level)
                .target(target)
                .build(),
        )
    }

    #[test]
    fn only_fusers_refused_reply_with_enoent_is_demoted() {
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        let line = format!("Failed to send FUSE reply: {enoent}");
        assert!(record_is_late_reply(
            "fuser::reply",
            log::Level::Error,
            &line
        ));
        let einval = std::io::Error::from_raw_os_error(libc::EINVAL);
        let other = format!("Failed to send FUSE reply: {einval}");
        assert!(!record_is_late_reply(
            "fuser::reply",
            log::Level::Error,
            &other
        ));
        assert!(!record_is_late_reply(
            "cofferfs::fs",
            log::Level::Error,
            &line
        ));
        assert!(!record_is_late_reply(
            "fuser::reply",
            log::Level::Warn,
            &line
        ));
    }
}
