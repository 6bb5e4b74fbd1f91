//! Just enough HPACK (RFC 7541) to re-encode a client's header blocks: a
//! full decoder (dynamic table, Huffman strings) that follows the client's
//! encoder, and an encoder that writes every field as a literal without
//! indexing, so the server's decoder never holds dynamic state of ours.

use std::collections::VecDeque;
use std::sync::OnceLock;

use super::huffman_table::{ENCODE_CODE_LENGTHS, ENCODE_CODES};

/// Why a header block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended inside a field.
    #[error("header block truncated")]
    Truncated,
    /// An integer of more than 5 bytes (h2's limit, ~2^28).
    #[error("integer overflow in header block")]
    IntegerOverflow,
    /// A field with an empty name (h2 refuses it).
    #[error("header field with an empty name")]
    EmptyName,
    /// The decoded header list (RFC 9113 sizes: name + value + 32 each)
    /// grew past the limit.
    #[error("decoded header list larger than {0} bytes")]
    ListTooLarge(usize),
    /// An index past the static and dynamic tables.
    #[error("header index {0} is not in the table")]
    BadIndex(usize),
    /// A Huffman string with a bad code, EOS, or bad padding.
    #[error("invalid Huffman string")]
    BadHuffman,
    /// A dynamic table size update above the limit the server allows.
    #[error("dynamic table size {0} above the limit {1}")]
    TableTooLarge(usize, usize),
    /// A size update after the first field of a block.
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
}

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: Vec<u8>,
    pub(crate) value: Vec<u8>,
    /// Sent as "never indexed" (a sensitive value): kept so on re-encoding.
    pub(crate) sensitive: bool,
}

/// The static table (RFC 7541, Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The decoder's state: the client encoder's dynamic table, mirrored.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// Newest entry first.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Sum of entry sizes (name + value + 32 each).
    size: usize,
    /// The current maximum, set by the client's size updates.
    max: usize,
    /// The most the server allows (its SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    /// The most a decoded block may hold (sum of name + value + 32): one
    /// byte on the wire can name a 4 KB table entry, so this, not the
    /// block's wire size, bounds the memory a block costs.
    max_list: usize,
}

impl Decoder {
    /// A decoder whose table may grow to `limit` bytes (4096 unless the
    /// server advertised another SETTINGS_HEADER_TABLE_SIZE) and whose
    /// decoded blocks may hold `max_list` bytes.
    pub(crate) fn new(limit: usize, max_list: usize) -> Self {
        Self {
            table: VecDeque::new(),
            size: 0,
            max: limit,
            limit,
            max_list,
        }
    }

    /// Decodes one complete header block.
    pub(crate) fn decode(&mut self, mut block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let mut fields = Vec::new();
        let (mut list, max_list) = (0, self.max_list);
        // Counts a field against the list limit before it is copied.
        let mut account = |name: &[u8], value: &[u8]| {
            list += name.len() + value.len() + 32;
            if list > max_list {
                Err(HpackError::ListTooLarge(max_list))
            } else {
                Ok(())
            }
        };
        while let Some(&first) = block.first() {
            if first & 0x80 != 0 {
                let index = integer(&mut block, 7)?;
                let (name, value) = self.entry(index)?;
                account(name, value)?;
                fields.push(Field {
                    name: name.to_vec(),
                    value: value.to_vec(),
                    sensitive: false,
                });
            } else if first & 0x40 != 0 {
                let field = self.literal(&mut block, 6, false)?;
                account(&field.name, &field.value)?;
                self.insert(field.name.clone(), field.value.clone());
                fields.push(field);
            } else if first & 0x20 != 0 {
                if !fields.is_empty() {
                    return Err(HpackError::LateSizeUpdate);
                }
                let max = integer(&mut block, 5)?;
                if max > self.limit {
                    return Err(HpackError::TableTooLarge(max, self.limit));
                }
                self.max = max;
                self.evict(0);
            } else {
                // 0000xxxx without indexing, 0001xxxx never indexed.
                let sensitive = first & 0x10 != 0;
                let field = self.literal(&mut block, 4, sensitive)?;
                account(&field.name, &field.value)?;
                fields.push(field);
            }
        }
        Ok(fields)
    }

    fn literal(&self, block: &mut &[u8], prefix: u8, sensitive: bool) -> Result<Field, HpackError> {
        let index = integer(block, prefix)?;
        let name = if index == 0 {
            string(block)?
        } else {
            self.entry(index)?.0.to_vec()
        };
        if name.is_empty() {
            return Err(HpackError::EmptyName);
        }
        let value = string(block)?;
        Ok(Field {
            name,
            value,
            sensitive,
        })
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        if index == 0 {
            return Err(HpackError::BadIndex(0));
        }
        if let Some((name, value)) = STATIC.get(index - 1) {
            return Ok((name.as_bytes(), value.as_bytes()));
        }
        self.table
            .get(index - 1 - STATIC.len())
            .map(|(n, v)| (&n[..], &v[..]))
            .ok_or(HpackError::BadIndex(index))
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + 32;
        self.evict(size);
        // An entry larger than the table empties it and is not added.
        if size <= self.max {
            self.size += size;
            self.table.push_front((name, value));
        }
    }

    /// Evicts the oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }
}

/// The most bytes an integer may take, its prefix byte included: h2's
/// limit (values up to ~2^28, far beyond any index or length a block of
/// ours can hold, and the shift stays far below usize's width).
const MAX_INTEGER_BYTES: usize = 5;

fn integer(block: &mut &[u8], prefix: u8) -> Result<usize, HpackError> {
    let (&first, rest) = block.split_first().ok_or(HpackError::Truncated)?;
    *block = rest;
    let mask = (1u16 << prefix) - 1;
    let mut value = usize::from(u16::from(first) & mask);
    if value < usize::from(mask) {
        return Ok(value);
    }
    for shift in (0..MAX_INTEGER_BYTES - 1).map(|i| 7 * i) {
        let (&b, rest) = block.split_first().ok_or(HpackError::Truncated)?;
        *block = rest;
        value += usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(HpackError::IntegerOverflow)
}

fn string(block: &mut &[u8]) -> Result<Vec<u8>, HpackError> {
    let huffman = block.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(block, 7)?;
    if block.len() < len {
        return Err(HpackError::Truncated);
    }
    let (bytes, rest) = block.split_at(len);
    *block = rest;
    if huffman {
        huffman_decode(bytes)
    } else {
        Ok(bytes.to_vec())
    }
}

/// The Huffman code laid out for canonical decoding: the code is canonical
/// (codes of one length are consecutive), so a code of length `l` is a
/// symbol when it lies in `first[l] .. first[l] + count[l]`. A few array
/// reads per bit: a block full of Huffman strings costs about what h2 pays
/// for it, not a hash lookup per bit.
struct Canonical {
    first: [u32; 31],
    count: [u32; 31],
    /// Where length `l`'s symbols start in `symbols`.
    offset: [usize; 31],
    /// Symbols by (length, code).
    symbols: [u8; 256],
}

fn canonical() -> &'static Canonical {
    static CANONICAL: OnceLock<Canonical> = OnceLock::new();
    CANONICAL.get_or_init(|| {
        let mut order: Vec<u8> = (0u8..=255).collect();
        order.sort_by_key(|&b| {
            (
                ENCODE_CODE_LENGTHS[usize::from(b)],
                ENCODE_CODES[usize::from(b)],
            )
        });
        let mut c = Canonical {
            first: [0; 31],
            count: [0; 31],
            offset: [0; 31],
            symbols: [0; 256],
        };
        for (i, &b) in order.iter().enumerate() {
            let l = usize::from(ENCODE_CODE_LENGTHS[usize::from(b)]);
            if c.count[l] == 0 {
                c.first[l] = ENCODE_CODES[usize::from(b)];
                c.offset[l] = i;
            }
            c.count[l] += 1;
            c.symbols[i] = b;
        }
        c
    })
}

/// Decodes a Huffman string. Padding must be at most 7 one bits, and EOS
/// must not appear (RFC 7541, 5.2).
fn huffman_decode(bytes: &[u8]) -> Result<Vec<u8>, HpackError> {
    let c = canonical();
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for byte in bytes {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let k = code.wrapping_sub(c.first[len]);
            if code >= c.first[len] && k < c.count[len] {
                // k < count[len] ≤ 256: a u32 that fits usize.
                let b = c.symbols[c.offset[len] + k as usize];
                // The table is checked canonical by a test; this keeps a
                // wrong table from decoding to a wrong byte regardless.
                if ENCODE_CODES[usize::from(b)] != code {
                    return Err(HpackError::BadHuffman);
                }
                out.push(b);
                (code, len) = (0, 0);
            } else if len >= 30 {
                // Only EOS (30 ones) is that long: not allowed in a string.
                return Err(HpackError::BadHuffman);
            }
        }
    }
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

/// Encodes fields as literals without indexing (never indexed for the
/// sensitive ones), names and values as plain strings.
pub(crate) fn encode(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        encode_integer(0, if f.sensitive { 0x10 } else { 0x00 }, 4, out);
        encode_integer(f.name.len(), 0, 7, out);
        out.extend_from_slice(&f.name);
        encode_integer(f.value.len(), 0, 7, out);
        out.extend_from_slice(&f.value);
    }
}

fn encode_integer(mut value: usize, flags: u8, prefix: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        // value < 2^prefix ≤ 128: fits the byte.
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| {
                (
                    String::from_utf8(f.name.clone()).unwrap(),
                    String::from_utf8(f.value.clone()).unwrap(),
                )
            })
            .collect()
    }

    fn want(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// RFC 7541 C.3 (plain strings) and C.4 (Huffman): three requests on
    /// one connection, the later ones using the dynamic table.
    #[test]
    fn rfc7541_request_examples() {
        let base = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        let second = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ];
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        let plain = [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ];
        let huffman = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        for blocks in [plain, huffman] {
            let mut d = Decoder::new(4096, 65536);
            for (block, expected) in blocks.iter().zip([&base[..], &second[..], &third[..]]) {
                let fields = d.decode(&hex(block)).unwrap();
                assert_eq!(pairs(&fields), want(expected), "{block}");
            }
            // Dynamic table after C.3.3 / C.4.3: three entries, 164 bytes.
            assert_eq!(d.size, 164);
            assert_eq!(d.table.len(), 3);
        }
    }

    /// HPACK integers are at most 5 bytes in h2 (its IntegerOverflow);
    /// zero-valued continuation bytes must neither overflow the shift nor
    /// be accepted as a padded encoding h2 would refuse.
    #[test]
    fn attack_long_integers_are_refused() {
        let mut block = vec![0x1f];
        block.extend(std::iter::repeat_n(0x80, 12));
        block.push(0x00);
        assert_eq!(
            Decoder::new(4096, 65536).decode(&block),
            Err(HpackError::IntegerOverflow)
        );
        // Six bytes are one too many; five are read (and name index 127).
        assert_eq!(
            Decoder::new(4096, 65536).decode(&[0xff, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(HpackError::IntegerOverflow)
        );
        assert_eq!(
            Decoder::new(4096, 65536).decode(&[0xff, 0x80, 0x80, 0x80, 0x00]),
            Err(HpackError::BadIndex(127))
        );
    }

    /// h2 refuses an empty header name; the rewriter must not pass one on.
    #[test]
    fn attack_empty_names_are_refused() {
        assert_eq!(
            Decoder::new(4096, 65536).decode(&[0x00, 0x00, 0x01, b'v']),
            Err(HpackError::EmptyName)
        );
    }

    /// Every byte, Huffman-encoded with the RFC's table and padded with
    /// ones, decodes to itself; the code is canonical, as the decoder needs.
    #[test]
    fn huffman_round_trips_every_byte() {
        let c = canonical();
        for l in 1..31 {
            for k in 0..c.count[l] {
                let b = usize::from(c.symbols[c.offset[l] + k as usize]);
                assert_eq!(
                    (usize::from(ENCODE_CODE_LENGTHS[b]), ENCODE_CODES[b]),
                    (l, c.first[l] + k),
                    "byte {b}"
                );
            }
        }
        let all: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        let (mut bits, mut n, mut enc) = (0u64, 0u32, Vec::new());
        for &b in &all {
            let i = usize::from(b);
            bits = (bits << ENCODE_CODE_LENGTHS[i]) | u64::from(ENCODE_CODES[i]);
            n += u32::from(ENCODE_CODE_LENGTHS[i]);
            while n >= 8 {
                n -= 8;
                enc.push((bits >> n) as u8);
            }
        }
        if n > 0 {
            enc.push(((bits << (8 - n)) as u8) | ((1u8 << (8 - n)) - 1));
        }
        assert_eq!(huffman_decode(&enc).unwrap(), all);
    }

    #[test]
    fn eviction_follows_the_table_size() {
        let mut d = Decoder::new(4096, 65536);
        // Size update to 64, then two literals with indexing of 40 bytes each:
        // the second evicts the first.
        let mut block = vec![0x20 | 0x1f, 64 - 31];
        for v in [b"aaaaaaa", b"bbbbbbb"] {
            block.extend_from_slice(&[0x40, 1, b'x']);
            block.push(7);
            block.extend_from_slice(v);
        }
        block.push(0x80 | 62);
        let fields = d.decode(&block).unwrap();
        assert_eq!(fields[2].value, b"bbbbbbb");
        assert_eq!(d.table.len(), 1);
        assert_eq!(d.decode(&[0x80 | 63]), Err(HpackError::BadIndex(63)));
    }

    #[test]
    fn malformed_blocks_are_refused() {
        let cases: &[(&str, HpackError)] = &[
            ("80", HpackError::BadIndex(0)),
            ("be", HpackError::BadIndex(62)),
            ("41", HpackError::Truncated),
            ("4105 6162", HpackError::Truncated),
            ("ff", HpackError::Truncated),
            ("ff ff ff ff ff 7f", HpackError::IntegerOverflow),
            // Table size above the limit.
            ("3fe2 1f", HpackError::TableTooLarge(4097, 4096)),
            // A size update after a field.
            ("82 20", HpackError::LateSizeUpdate),
            // Huffman: padding of zeros, and EOS in the string.
            ("4181 00", HpackError::BadHuffman),
            ("4184 ffff ffff", HpackError::BadHuffman),
        ];
        for (block, err) in cases {
            assert_eq!(
                Decoder::new(4096, 65536).decode(&hex(block)).as_ref(),
                Err(err),
                "{block}"
            );
        }
    }

    #[test]
    fn encoded_fields_decode_to_themselves() {
        let fields = vec![
            Field {
                name: b":authority".to_vec(),
                value: b"localhost".to_vec(),
                sensitive: false,
            },
            Field {
                name: b"authorization".to_vec(),
                value: vec![b'x'; 300],
                sensitive: true,
            },
            Field {
                name: vec![b'n'; 127],
                value: Vec::new(),
                sensitive: false,
            },
        ];
        let mut out = Vec::new();
        encode(&fields, &mut out);
        let mut d = Decoder::new(4096, 65536);
        assert_eq!(d.decode(&out).unwrap(), fields);
        assert!(d.table.is_empty(), "literals without indexing add nothing");
    }
}
