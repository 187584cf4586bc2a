//! Packet framing of the GDB remote serial protocol: `$payload#checksum`,
//! `+`/`-` acknowledgements, `}` escapes and `*` run-length encoding.
//!
//! This module only turns bytes into frames and back; the caller owns the
//! socket, the acknowledgement mode and the size limits it negotiated.

use std::fmt::Write as _;

/// Bytes that must be escaped inside a packet payload.
const ESCAPED: [u8; 4] = [b'$', b'#', b'}', b'*'];
/// The escape byte; the byte after it is XORed with [`ESCAPE_XOR`].
const ESCAPE: u8 = b'}';
const ESCAPE_XOR: u8 = 0x20;
/// Run-length marker: `X*n` repeats `X` `n - 29` more times.
const RUN_LENGTH: u8 = b'*';
const RUN_LENGTH_BIAS: u8 = 29;

/// Framing errors of packets received from the stub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Bytes that start neither a packet nor an acknowledgement.
    #[error("received '{text}' instead of a packet")]
    InvalidStart {
        /// The unexpected bytes, printable characters only.
        text: String,
    },
    /// The packet's encoded payload is longer than the negotiated maximum.
    #[error("packet of at least {len_bytes} bytes exceeds the maximum of {max_bytes} bytes")]
    PacketTooLarge {
        /// Bytes received so far for the payload.
        len_bytes: usize,
        /// The limit in force.
        max_bytes: usize,
    },
    /// The two characters after `#` are not hexadecimal.
    #[error("invalid checksum characters '{text}'")]
    InvalidChecksumText {
        /// The two characters.
        text: String,
    },
    /// The checksum does not match the payload.
    #[error("checksum mismatch: packet says {stated:#04x}, payload sums to {computed:#04x}")]
    ChecksumMismatch {
        /// Checksum sent by the stub.
        stated: u8,
        /// Checksum computed over the received payload.
        computed: u8,
    },
    /// A `}` escape at the end of the payload.
    #[error("escape character at the end of the payload")]
    TruncatedEscape,
    /// A `*` run-length marker with no character before it, or with an
    /// invalid count.
    #[error("invalid run-length encoding at payload offset {offset}")]
    InvalidRunLength {
        /// Offset of the `*` in the encoded payload.
        offset: usize,
    },
    /// Decoding made the payload longer than the maximum.
    #[error("decoded payload exceeds the maximum of {max_bytes} bytes")]
    DecodedTooLarge {
        /// The limit in force.
        max_bytes: usize,
    },
}

/// One frame read from the stub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+`: the previous packet arrived intact.
    Ack,
    /// `-`: the previous packet must be sent again.
    Nak,
    /// A packet with its checksum verified and its payload decoded.
    Packet(Vec<u8>),
    /// A packet whose checksum did not match; in acknowledgement mode the
    /// stub resends it after a `-`.
    Corrupt(FrameError),
}

/// Computes the modulo-256 sum that follows `#`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b))
}

/// Frames `payload` as `$escaped#cc`, escaping the bytes the protocol
/// reserves.
pub fn encode_packet(payload: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(payload.len() + 4);
    for &byte in payload {
        if ESCAPED.contains(&byte) {
            escaped.push(ESCAPE);
            escaped.push(byte ^ ESCAPE_XOR);
        } else {
            escaped.push(byte);
        }
    }
    let mut framed = Vec::with_capacity(escaped.len() + 4);
    framed.push(b'$');
    framed.extend_from_slice(&escaped);
    framed.push(b'#');
    let mut sum = String::with_capacity(2);
    let _ = write!(sum, "{:02x}", checksum(&escaped));
    framed.extend_from_slice(sum.as_bytes());
    framed
}

/// Decodes `}` escapes and `*` run lengths of a received payload.
///
/// The result is at most `max_bytes` long, so a short packet full of run
/// lengths cannot make the client allocate without bound.
pub fn decode_payload(encoded: &[u8], max_bytes: usize) -> Result<Vec<u8>, FrameError> {
    // Most replies (hex memory dumps from QEMU) use neither escapes nor run
    // lengths; `contains` on bytes is a memchr, so check that first.
    if !encoded.contains(&ESCAPE) && !encoded.contains(&RUN_LENGTH) {
        if encoded.len() > max_bytes {
            return Err(FrameError::DecodedTooLarge { max_bytes });
        }
        return Ok(encoded.to_vec());
    }
    let mut decoded = Vec::with_capacity(encoded.len().min(max_bytes));
    let mut i = 0;
    while i < encoded.len() {
        let byte = encoded[i];
        match byte {
            ESCAPE => {
                let next = *encoded.get(i + 1).ok_or(FrameError::TruncatedEscape)?;
                decoded.push(next ^ ESCAPE_XOR);
                i += 2;
            }
            RUN_LENGTH => {
                let previous = *decoded.last().ok_or(FrameError::InvalidRunLength { offset: i })?;
                let count_char = *encoded.get(i + 1).ok_or(FrameError::InvalidRunLength { offset: i })?;
                // Counts start at ' ' + 3 = 32 (three repeats); gdb never
                // sends '#' or '$' as a count, and below 29 is meaningless.
                let repeats = count_char
                    .checked_sub(RUN_LENGTH_BIAS)
                    .filter(|_| (b' '..=b'~').contains(&count_char))
                    .ok_or(FrameError::InvalidRunLength { offset: i })?;
                let new_len = decoded.len() + usize::from(repeats);
                if new_len > max_bytes {
                    return Err(FrameError::DecodedTooLarge { max_bytes });
                }
                decoded.resize(new_len, previous);
                i += 2;
            }
            _ => {
                decoded.push(byte);
                i += 1;
            }
        }
        if decoded.len() > max_bytes {
            return Err(FrameError::DecodedTooLarge { max_bytes });
        }
    }
    Ok(decoded)
}

/// Reads the next frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only the beginning of a frame, and
/// otherwise the frame and the number of bytes it used. `max_payload_bytes`
/// bounds the encoded payload, so the caller never buffers more than that
/// plus four bytes of framing while waiting for `#`.
pub fn next_frame(buf: &[u8], max_payload_bytes: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first {
        b'+' => return Ok(Some((Frame::Ack, 1))),
        b'-' => return Ok(Some((Frame::Nak, 1))),
        b'$' => {}
        _ => {
            return Err(FrameError::InvalidStart {
                text: printable_prefix(buf),
            })
        }
    }

    let body = &buf[1..];
    let Some(hash) = body.iter().position(|&b| b == b'#') else {
        if body.len() > max_payload_bytes {
            return Err(FrameError::PacketTooLarge {
                len_bytes: body.len(),
                max_bytes: max_payload_bytes,
            });
        }
        return Ok(None);
    };
    if hash > max_payload_bytes {
        return Err(FrameError::PacketTooLarge {
            len_bytes: hash,
            max_bytes: max_payload_bytes,
        });
    }
    let Some(sum_text) = body.get(hash + 1..hash + 3) else {
        return Ok(None);
    };
    let consumed = 1 + hash + 3;
    let encoded = &body[..hash];

    let stated = std::str::from_utf8(sum_text)
        .ok()
        .and_then(|text| u8::from_str_radix(text, 16).ok())
        .ok_or_else(|| FrameError::InvalidChecksumText {
            text: String::from_utf8_lossy(sum_text).into_owned(),
        })?;
    let computed = checksum(encoded);
    if stated != computed {
        let error = FrameError::ChecksumMismatch { stated, computed };
        return Ok(Some((Frame::Corrupt(error), consumed)));
    }

    // Run lengths expand at most 97 times per two bytes; twice the encoded
    // limit covers every reply the client requests (hex doubles a length).
    let payload = decode_payload(encoded, max_payload_bytes.saturating_mul(2))?;
    Ok(Some((Frame::Packet(payload), consumed)))
}

/// Returns the first line of `buf`, at most 40 characters, with
/// unprintable bytes replaced, for error messages about foreign servers.
fn printable_prefix(buf: &[u8]) -> String {
    buf.iter()
        .take_while(|&&b| b != b'\r' && b != b'\n')
        .take(40)
        .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' })
        .collect()
}

/// Decodes a hexadecimal string into bytes.
///
/// Returns `None` on odd length or a non-hex character.
pub fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; text.len() / 2];
    decode_hex_into(text, &mut bytes)?;
    Some(bytes)
}

/// Decodes a hexadecimal string into `out`, which must be half its length.
///
/// Returns `None` on a length mismatch or a non-hex character.
pub fn decode_hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() % 2 != 0 || text.len() / 2 != out.len() {
        return None;
    }
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(())
}

/// Encodes bytes as lower-case hexadecimal.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(bytes: &[u8]) -> (Frame, usize) {
        next_frame(bytes, 4096).unwrap().unwrap()
    }

    #[test]
    fn encode_computes_checksum() {
        assert_eq!(encode_packet(b"g"), b"$g#67");
        assert_eq!(encode_packet(b"qSupported"), b"$qSupported#37");
    }

    #[test]
    fn encode_escapes_reserved_bytes() {
        let framed = encode_packet(b"a$#}*b");
        assert_eq!(&framed[..11], b"$a}\x04}\x03}]}\x0ab");
        let escaped = &framed[1..framed.len() - 3];
        let sum = format!("{:02x}", checksum(escaped));
        assert_eq!(&framed[framed.len() - 2..], sum.as_bytes());
    }

    #[test]
    fn decode_round_trips_escapes() {
        let payload: Vec<u8> = (0..=255u8).collect();
        let framed = encode_packet(&payload);
        let (frame, used) = frame_of(&framed);
        assert_eq!(used, framed.len());
        assert_eq!(frame, Frame::Packet(payload));
    }

    #[test]
    fn decode_expands_run_length() {
        // "0* " is '0' plus 3 repeats; "f*!" is 'f' plus 4 repeats.
        assert_eq!(decode_payload(b"0* ", 100).unwrap(), b"0000");
        assert_eq!(decode_payload(b"af*!", 100).unwrap(), b"afffff");
    }

    #[test]
    fn decode_run_length_is_bounded() {
        let error = decode_payload(b"0*~0*~", 100).unwrap_err();
        assert_eq!(error, FrameError::DecodedTooLarge { max_bytes: 100 });
    }

    #[test]
    fn decode_rejects_run_length_without_char() {
        assert_eq!(
            decode_payload(b"*!", 100).unwrap_err(),
            FrameError::InvalidRunLength { offset: 0 }
        );
        assert_eq!(
            decode_payload(b"a*", 100).unwrap_err(),
            FrameError::InvalidRunLength { offset: 1 }
        );
    }

    #[test]
    fn decode_rejects_trailing_escape() {
        assert_eq!(decode_payload(b"ab}", 100).unwrap_err(), FrameError::TruncatedEscape);
    }

    #[test]
    fn frame_reports_acks() {
        assert_eq!(frame_of(b"+$OK#9a"), (Frame::Ack, 1));
        assert_eq!(frame_of(b"-"), (Frame::Nak, 1));
    }

    #[test]
    fn frame_waits_for_complete_packet() {
        assert_eq!(next_frame(b"", 100).unwrap(), None);
        assert_eq!(next_frame(b"$OK", 100).unwrap(), None);
        assert_eq!(next_frame(b"$OK#9", 100).unwrap(), None);
        assert_eq!(frame_of(b"$OK#9a+"), (Frame::Packet(b"OK".to_vec()), 6));
    }

    #[test]
    fn frame_reports_checksum_mismatch() {
        let (frame, used) = frame_of(b"$OK#00");
        assert_eq!(used, 6);
        assert_eq!(
            frame,
            Frame::Corrupt(FrameError::ChecksumMismatch { stated: 0, computed: 0x9a })
        );
    }

    #[test]
    fn frame_rejects_bad_checksum_text() {
        let error = next_frame(b"$OK#zz", 100).unwrap_err();
        assert_eq!(error, FrameError::InvalidChecksumText { text: "zz".into() });
    }

    #[test]
    fn frame_rejects_oversized_packet() {
        let mut long = vec![b'$'];
        long.extend(std::iter::repeat(b'0').take(200));
        let error = next_frame(&long, 100).unwrap_err();
        assert_eq!(error, FrameError::PacketTooLarge { len_bytes: 200, max_bytes: 100 });
    }

    #[test]
    fn frame_rejects_foreign_protocol() {
        let error = next_frame(b"HTTP/1.1 400 Bad Request\r\n", 100).unwrap_err();
        assert_eq!(error, FrameError::InvalidStart { text: "HTTP/1.1 400 Bad Request".into() });
    }

    #[test]
    fn binary_x_reply_decodes() {
        // A binary memory reply starts with 'b'; the bytes 0x23 ('#') and
        // 0x7d ('}') arrive escaped.
        let data = [0x01u8, 0x23, 0x7d, 0x00, 0xff];
        let mut payload = b"b".to_vec();
        payload.extend_from_slice(&data);
        let framed = encode_packet(&payload);
        assert!(framed.windows(2).any(|w| w == b"}\x03"));
        let (frame, _) = frame_of(&framed);
        assert_eq!(frame, Frame::Packet(payload));
    }

    #[test]
    fn random_streams_never_panic() {
        // A fixed xorshift sequence biased toward the framing bytes, so the
        // decoder meets escapes, run lengths and bad checksums.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"$#}*+-0123456789abcdefOK \x03";
        for _ in 0..2000 {
            let mut stream = Vec::new();
            for _ in 0..64 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                stream.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let mut rest = stream.as_slice();
            while let Ok(Some((frame, used))) = next_frame(rest, 32) {
                assert!(used > 0 && used <= rest.len());
                if let Frame::Packet(payload) = frame {
                    assert!(payload.len() <= 64);
                }
                rest = &rest[used..];
            }
        }
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(decode_hex(b"00ff7A").unwrap(), vec![0, 0xff, 0x7a]);
        assert_eq!(encode_hex(&[0, 0xff, 0x7a]), "00ff7a");
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"0g"), None);
    }
}
