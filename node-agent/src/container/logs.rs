//! Reading a container's log.

use std::io::Write;
use std::time::Duration;

use berth_runtime::logs::{Follower, Record, Stream, read_all};
use berth_runtime::time::parse_rfc3339;

use super::{ContainerError, ContainerManager};

/// Options of `logs`.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep printing new lines until the container stops.
    pub follow: bool,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only lines written at or after this time, Unix nanoseconds.
    pub since: Option<i128>,
}

impl ContainerManager {
    /// The stored log records of a container.
    pub fn log_records(&self, reference: &str) -> Result<Vec<Record>, ContainerError> {
        let info = self.inspect(reference)?;
        let path = self.dir(&info.spec.id).log();
        read_all(&path, info.spec.log.max_files).map_err(|e| ContainerError::io("read", path, e))
    }

    /// Writes the log to `out` / `err` by stream, following when asked.
    pub fn write_logs(
        &self,
        reference: &str,
        opts: &LogOptions,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), ContainerError> {
        self.each_log(reference, opts, &mut |records| {
            for r in records {
                let w: &mut dyn Write = if r.stream == Stream::Stdout {
                    &mut *out
                } else {
                    &mut *err
                };
                if opts.timestamps {
                    let _ = write!(w, "{} ", r.time);
                }
                let _ = w.write_all(r.log.as_bytes());
                let _ = w.flush();
            }
            true
        })
    }

    /// Gives `sink` the stored log records (the last `tail`, from `since`), then, when
    /// following, new ones as they come until the container stops or `sink` answers false.
    pub fn each_log(
        &self,
        reference: &str,
        opts: &LogOptions,
        sink: &mut dyn FnMut(&[Record]) -> bool,
    ) -> Result<(), ContainerError> {
        let info = self.inspect(reference)?;
        let path = self.dir(&info.spec.id).log();
        // Start following before reading, so no line falls between the two.
        let mut follower = if opts.follow {
            Follower::from_end(&path).ok()
        } else {
            None
        };
        let mut records = read_all(&path, info.spec.log.max_files)
            .map_err(|e| ContainerError::io("read", &path, e))?;
        if let Some(since) = opts.since {
            records.retain(|r| parse_rfc3339(&r.time).is_none_or(|t| t >= since));
        }
        if let Some(n) = opts.tail {
            let skip = records.len().saturating_sub(n);
            records.drain(..skip);
        }
        let last_time = records.last().map(|r| r.time.clone());
        if !sink(&records) {
            return Ok(());
        }
        if let Some(f) = follower.as_mut() {
            let id = info.spec.id.clone();
            let mut seen_last = last_time.is_none();
            loop {
                let active = self.load(&id).map(|c| c.is_active()).unwrap_or(false);
                let mut fresh = f.poll().map_err(|e| ContainerError::io("read", &path, e))?;
                // Lines already given from the full read come again from the follower.
                if !seen_last {
                    fresh.retain(|r| Some(&r.time) > last_time.as_ref());
                    seen_last = !fresh.is_empty();
                }
                if !fresh.is_empty() && !sink(&fresh) {
                    return Ok(());
                }
                if !active {
                    return Ok(());
                }
                // An empty batch lets the sink notice that its reader has gone.
                if fresh.is_empty() && !sink(&[]) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}
