//! Request bodies that can be sent again (a request is repeated after an authentication
//! challenge), and bounded reading of response bodies.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The body type of every request.
pub(crate) type ReqBody = UnsyncBoxBody<Bytes, io::Error>;

/// Size of the reads a file body streams.
const FILE_CHUNK: usize = 256 * 1024;

/// What a request sends.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// `len` bytes of a file from `offset`, streamed.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Body {
    /// Its length, for `Content-Length`.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    /// A fresh hyper body.
    pub(crate) fn build(&self) -> ReqBody {
        match self {
            Body::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            Body::Bytes(b) => Full::new(b.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
            Body::File { path, offset, len } => file_body(path.clone(), *offset, *len),
        }
    }
}

struct FileState {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    offset: u64,
    remaining: u64,
    failed: bool,
}

/// Streams `len` bytes of `path` from `offset`; a file shorter than that is an error.
fn file_body(path: PathBuf, offset: u64, len: u64) -> ReqBody {
    let state = FileState {
        path,
        file: None,
        offset,
        remaining: len,
        failed: false,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        if st.remaining == 0 || st.failed {
            return None;
        }
        let chunk = next_chunk(&mut st).await;
        st.failed = chunk.is_err();
        Some((chunk.map(Frame::data), st))
    });
    StreamBody::new(stream.boxed()).boxed_unsync()
}

async fn next_chunk(st: &mut FileState) -> io::Result<Bytes> {
    if st.file.is_none() {
        let mut f = tokio::fs::File::open(&st.path).await?;
        f.seek(io::SeekFrom::Start(st.offset)).await?;
        st.file = Some(f);
    }
    let Some(file) = st.file.as_mut() else {
        return Err(io::Error::other("file body without a file"));
    };
    let want = usize::try_from(st.remaining.min(FILE_CHUNK as u64)).unwrap_or(FILE_CHUNK);
    let mut buf = vec![0u8; want];
    let n = file.read(&mut buf).await?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} ended {} bytes early", st.path.display(), st.remaining),
        ));
    }
    buf.truncate(n);
    st.remaining -= n as u64;
    Ok(Bytes::from(buf))
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is longer than the cap.
    TooLong,
    /// The connection failed.
    Http(hyper::Error),
}

/// Reads a whole body of at most `cap` bytes.
pub(crate) async fn read_capped(mut body: Incoming, cap: u64) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Http)?;
        if let Ok(data) = frame.into_data() {
            if out.len() as u64 + data.len() as u64 > cap {
                return Err(ReadError::TooLong);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}
