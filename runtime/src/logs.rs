//! Container logs in Docker's `json-file` format (one JSON object a line: `log`, `stream`,
//! `time`), with size-capped rotation, and the reader used by `logs` and `logs -f`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::LogConfig;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One log line as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The text, with its trailing newline when it had one.
    pub log: String,
    /// Its stream.
    pub stream: Stream,
    /// RFC 3339 time with nanoseconds.
    pub time: String,
}

/// Appends records to the current file and rotates it when it reaches `max_size`.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    cfg: LogConfig,
}

impl LogWriter {
    /// Opens (appending) the current log file.
    pub fn open(path: &Path, cfg: LogConfig) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            cfg,
        })
    }

    /// Writes one line (or a fragment of a very long one).
    pub fn write(&mut self, stream: Stream, text: &[u8], time: &str) -> io::Result<()> {
        let rec = Record {
            log: String::from_utf8_lossy(text).into_owned(),
            stream,
            time: time.to_string(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.cfg.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.cfg.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(rotated(&self.path, keep - 1));
        for i in (1..keep - 1).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `container.log.N`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Splits a byte stream into lines, keeping newlines; fragments longer than 16 KiB are
/// emitted as they are, as Docker does.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    const MAX: usize = 16 * 1024;

    /// Adds data and returns the complete lines it finished.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
            out.push(self.buf.drain(..=i).collect());
        }
        while self.buf.len() >= Self::MAX {
            out.push(self.buf.drain(..Self::MAX).collect());
        }
        out
    }

    /// Whatever is left without a newline.
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// Reads every stored record, oldest first (rotated files, then the current one).
pub fn read_all(path: &Path, max_files: u32) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for n in (1..max_files.max(1)).rev() {
        read_file_into(&rotated(path, n), &mut out)?;
    }
    read_file_into(path, &mut out)?;
    Ok(out)
}

fn read_file_into(path: &Path, out: &mut Vec<Record>) -> io::Result<()> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(f).lines() {
        if let Ok(rec) = serde_json::from_str::<Record>(&line?) {
            out.push(rec);
        }
    }
    Ok(())
}

/// Follows the current log file from its end, across rotations.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    reader: BufReader<File>,
    ino: u64,
    partial: String,
}

impl Follower {
    /// Starts following at the current end of the file.
    pub fn from_end(path: &Path) -> io::Result<Self> {
        let mut f = OpenOptions::new().read(true).create(false).open(path)?;
        let ino = f.metadata()?.ino();
        f.seek(SeekFrom::End(0))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::new(f),
            ino,
            partial: String::new(),
        })
    }

    /// Returns the records written since the last call (possibly none).
    pub fn poll(&mut self) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        if let Ok(m) = fs::metadata(&self.path)
            && m.ino() != self.ino
        {
            // Rotated: the old file is complete; continue with the new one from its start.
            self.drain(&mut out)?;
            self.reader = BufReader::new(File::open(&self.path)?);
            self.ino = m.ino();
            self.partial.clear();
            self.drain(&mut out)?;
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<Record>) -> io::Result<()> {
        loop {
            let n = self.reader.read_line(&mut self.partial)?;
            if n == 0 || !self.partial.ends_with('\n') {
                return Ok(());
            }
            if let Ok(rec) = serde_json::from_str::<Record>(self.partial.trim_end()) {
                out.push(rec);
            }
            self.partial.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_long_ones_cut() {
        let mut b = LineBuffer::default();
        assert_eq!(b.push(b"ab"), Vec::<Vec<u8>>::new());
        assert_eq!(b.push(b"c\nd\ne"), vec![b"abc\n".to_vec(), b"d\n".to_vec()]);
        assert_eq!(b.take_rest(), Some(b"e".to_vec()));
        let long = vec![b'x'; LineBuffer::MAX + 5];
        let out = b.push(&long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LineBuffer::MAX);
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let cfg = LogConfig {
            max_size: 200,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, cfg).unwrap();
        for i in 0..40 {
            w.write(
                Stream::Stdout,
                format!("line {i}\n").as_bytes(),
                "2026-01-01T00:00:00.000000000Z",
            )
            .unwrap();
        }
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(
                fs::metadata(&p).unwrap().len() <= 200,
                "{} too big",
                p.display()
            );
        }
        let recs = read_all(&path, 3).unwrap();
        assert!(!recs.is_empty() && recs.len() < 40);
        assert_eq!(recs.last().unwrap().log, "line 39\n");
        let nums: Vec<u32> = recs
            .iter()
            .map(|r| r.log[5..].trim().parse().unwrap())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    }

    #[test]
    fn follower_sees_new_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(
            &path,
            LogConfig {
                max_size: 120,
                max_files: 2,
            },
        )
        .unwrap();
        w.write(Stream::Stdout, b"before\n", "t").unwrap();
        let mut f = Follower::from_end(&path).unwrap();
        assert!(f.poll().unwrap().is_empty());
        let mut seen = Vec::new();
        for i in 0..6 {
            w.write(Stream::Stderr, format!("after {i}\n").as_bytes(), "t")
                .unwrap();
            seen.extend(f.poll().unwrap());
        }
        let texts: Vec<&str> = seen.iter().map(|r| r.log.as_str()).collect();
        assert_eq!(
            texts,
            [
                "after 0\n",
                "after 1\n",
                "after 2\n",
                "after 3\n",
                "after 4\n",
                "after 5\n"
            ]
        );
        assert!(seen.iter().all(|r| r.stream == Stream::Stderr));
    }
}
