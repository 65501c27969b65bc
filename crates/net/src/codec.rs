//! The request-response codec: one length-prefixed frame (u32, big-endian) per request and per
//! response, bounded by [`MAX_REQUEST_BYTES`] / [`MAX_RESPONSE_BYTES`] before anything is
//! allocated, and decoded with [`Request::decode`] / [`Response::decode`].
//!
//! A malformed or oversized inbound request is read as [`WireRequest::Malformed`] (request-
//! response does not report failed reads, and the network task must see them to ban the
//! peer); a malformed response is an [`io::ErrorKind::InvalidData`] error carrying
//! [`Malformed`] (see [`is_malformed`]); a local request over its limit is refused with
//! [`io::ErrorKind::InvalidInput`].

use crate::handle::NetStats;
use crate::messages::{Request, Response, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::{
    io,
    sync::{atomic::Ordering, Arc},
};

/// A request as read from a peer.
#[derive(Debug)]
pub(crate) enum WireRequest {
    /// A well-formed request.
    Valid(Request),
    /// The peer sent garbage (why).
    Malformed(String),
}

/// A response as written to or read from a peer.
#[derive(Debug)]
pub(crate) enum WireResponse {
    /// A response.
    Valid(Response),
    /// Test support: bytes written as they are (read responses are always `Valid`).
    #[cfg(feature = "test-util")]
    Raw(Vec<u8>),
}

/// The codec; it counts the payload bytes and messages it moves in [`NetStats`].
#[derive(Clone, Debug)]
pub(crate) struct WireCodec {
    stats: Arc<NetStats>,
}

impl WireCodec {
    pub(crate) fn new(stats: Arc<NetStats>) -> Self {
        Self { stats }
    }

    fn count_in(&self, len: usize) {
        self.stats.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    fn count_out(&self, len: usize) {
        self.stats.bytes_out.fetch_add(len as u64, Ordering::Relaxed);
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
    }
}

/// The most a frame's buffer grows by before the bytes that fill it have arrived.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame of at most `max` bytes; the length is checked before the buffer exists,
/// and the buffer grows in chunks of [`READ_CHUNK`] as the data arrives (a peer that announces
/// a large frame and sends nothing costs no more than one chunk).
pub(crate) async fn read_frame<T>(io: &mut T, max: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; 4];
    io.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(invalid(format!("frame of {len} bytes is over the limit of {max}")));
    }
    let mut buf = Vec::new();
    read_body(io, len, &mut buf).await?;
    Ok(buf)
}

/// Appends exactly `len` bytes read from `io` to `buf`, growing it by at most [`READ_CHUNK`]
/// at a time.
async fn read_body<T>(io: &mut T, len: usize, buf: &mut Vec<u8>) -> io::Result<()>
where
    T: AsyncRead + Unpin + Send,
{
    while buf.len() < len {
        let start = buf.len();
        let end = start.saturating_add(READ_CHUNK).min(len);
        buf.resize(end, 0);
        if let Err(e) = io.read_exact(&mut buf[start..end]).await {
            buf.truncate(start);
            return Err(e);
        }
    }
    Ok(())
}

/// Writes one frame.
pub(crate) async fn write_frame<T>(io: &mut T, bytes: &[u8]) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

/// The peer sent a frame over its limit or not decodable: the error the network task bans
/// for (told apart from transport errors, which may also read as `InvalidData`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Malformed(String);

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Malformed(e.to_string()))
}

/// Whether `e` is the peer's fault (a malformed or oversized frame).
pub(crate) fn is_malformed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Malformed>())
}

#[async_trait::async_trait]
impl libp2p::request_response::Codec for WireCodec {
    type Protocol = StreamProtocol;
    type Request = WireRequest;
    type Response = WireResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = match read_frame(io, MAX_REQUEST_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) if is_malformed(&e) => return Ok(WireRequest::Malformed(e.to_string())),
            Err(e) => return Err(e),
        };
        self.count_in(bytes.len());
        Ok(match Request::decode(&bytes) {
            Ok(request) => WireRequest::Valid(request),
            Err(e) => WireRequest::Malformed(e.to_string()),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<WireResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_RESPONSE_BYTES).await?;
        let response = Response::decode(&bytes).map_err(invalid)?;
        self.count_in(bytes.len());
        Ok(WireResponse::Valid(response))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: WireRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let WireRequest::Valid(request) = request else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a request"));
        };
        let bytes = request.encode();
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "request of {} bytes is over the limit of {MAX_REQUEST_BYTES}",
                    bytes.len()
                ),
            ));
        }
        write_frame(io, &bytes).await?;
        self.count_out(bytes.len());
        Ok(())
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: WireResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        #[allow(clippy::infallible_destructuring_match)] // not without the test-util feature
        let response = match response {
            WireResponse::Valid(response) => response,
            #[cfg(feature = "test-util")]
            WireResponse::Raw(bytes) => {
                write_frame(io, &bytes).await?;
                self.count_out(bytes.len());
                return Ok(());
            }
        };
        let mut bytes = response.encode();
        if bytes.len() > MAX_RESPONSE_BYTES {
            tracing::warn!(len = bytes.len(), "response over the limit; sending an error instead");
            bytes = Response::Error("response too large".into()).encode();
        }
        write_frame(io, &bytes).await?;
        self.count_out(bytes.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::futures::{executor::block_on, io::Cursor};
    use libp2p::request_response::Codec as _;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/test/1")
    }

    #[test]
    fn frames_round_trip() {
        let mut codec = WireCodec::new(Arc::default());
        let mut buf = Cursor::new(Vec::new());
        let status = WireRequest::Valid(Request::Status);
        block_on(codec.write_request(&protocol(), &mut buf, status)).unwrap();
        let mut read = Cursor::new(buf.into_inner());
        let read = block_on(codec.read_request(&protocol(), &mut read)).unwrap();
        assert!(matches!(read, WireRequest::Valid(Request::Status)), "{read:?}");
        assert_eq!(codec.stats.snapshot().messages_in, 1);
        assert_eq!(codec.stats.snapshot().messages_out, 1);
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_reading() {
        let mut codec = WireCodec::new(Arc::default());
        // Announces 4 GiB - 1 but carries nothing: refused on the prefix alone.
        let mut read = Cursor::new(u32::MAX.to_be_bytes().to_vec());
        let read = block_on(codec.read_request(&protocol(), &mut read)).unwrap();
        assert!(matches!(read, WireRequest::Malformed(_)), "{read:?}");
        let mut read = Cursor::new(((MAX_RESPONSE_BYTES + 1) as u32).to_be_bytes().to_vec());
        let err = block_on(codec.read_response(&protocol(), &mut read)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_large_announced_frame_is_read_in_chunks_as_the_data_arrives() {
        // Announces the largest response but sends 10 bytes: at most one chunk allocated.
        let mut io = Cursor::new(vec![7u8; 10]);
        let mut buf = Vec::new();
        let err = block_on(read_body(&mut io, MAX_RESPONSE_BYTES, &mut buf)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(buf.capacity() <= READ_CHUNK, "capacity {}", buf.capacity());
        const { assert!(MAX_RESPONSE_BYTES > READ_CHUNK) };
        // A frame over several chunks arrives whole.
        let len = 3 * READ_CHUNK + 5;
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut frame = (len as u32).to_be_bytes().to_vec();
        frame.extend(&payload);
        let read = block_on(read_frame(&mut Cursor::new(frame), MAX_RESPONSE_BYTES)).unwrap();
        assert_eq!(read, payload);
    }

    #[test]
    fn malformed_payload_is_invalid_data() {
        let mut codec = WireCodec::new(Arc::default());
        let mut frame = 3u32.to_be_bytes().to_vec();
        frame.extend([0xff, 0xff, 0xff]);
        let read = block_on(codec.read_request(&protocol(), &mut Cursor::new(frame))).unwrap();
        assert!(matches!(read, WireRequest::Malformed(_)), "{read:?}");
        let mut frame = 3u32.to_be_bytes().to_vec();
        frame.extend([0xff, 0xff, 0xff]);
        let err = block_on(codec.read_response(&protocol(), &mut Cursor::new(frame))).unwrap_err();
        assert!(is_malformed(&err));
        let eof = block_on(codec.read_request(&protocol(), &mut Cursor::new(vec![0, 0, 0, 9, 1])));
        assert!(!is_malformed(&eof.unwrap_err()), "a cut stream is not the peer's fault");
    }

    #[test]
    fn oversized_request_is_not_written() {
        let mut codec = WireCodec::new(Arc::default());
        let big = Request::Blocks(vec![pouw_primitives::Hash::ZERO; 4096]);
        let mut buf = Cursor::new(Vec::new());
        let err = block_on(codec.write_request(&protocol(), &mut buf, WireRequest::Valid(big)));
        let err = err.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(buf.into_inner().is_empty());
    }
}
