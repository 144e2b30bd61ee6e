//! XDR (RFC 4506) as libvirt's remote protocol uses it: big-endian, every item padded to 4
//! bytes. Our own small codec: the protocol needs a dozen primitives, and every decoder must
//! bound lengths before allocating, which is easiest to guarantee in one place.

use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum XdrError {
    /// The payload ended inside an item.
    Truncated { wanted: usize, left: usize },
    /// A length or count above the protocol's maximum for that item.
    TooLong { len: usize, max: usize },
    /// A string that is not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for XdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XdrError::Truncated { wanted, left } => {
                write!(f, "truncated: needed {wanted} bytes, {left} left")
            }
            XdrError::TooLong { len, max } => write!(f, "length {len} exceeds the maximum {max}"),
            XdrError::InvalidUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for XdrError {}

fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Appends XDR items to a buffer.
#[derive(Default)]
pub struct XdrWriter {
    buf: Vec<u8>,
}

impl XdrWriter {
    pub fn new() -> XdrWriter {
        XdrWriter::default()
    }

    /// Continues an existing buffer (e.g. one that already holds a message header).
    pub fn from_vec(buf: Vec<u8>) -> XdrWriter {
        XdrWriter { buf }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn put_u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_bool(&mut self, v: bool) {
        self.put_u32(u32::from(v));
    }

    /// Bytes that are already XDR (a payload encoded elsewhere): appended as they are.
    pub fn put_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// `opaque[N]`: the bytes and padding, no length.
    pub fn put_fixed_opaque(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.buf
            .extend(std::iter::repeat_n(0, padding(bytes.len())));
    }

    /// `opaque<>`: length, bytes, padding.
    pub fn put_opaque(&mut self, bytes: &[u8]) {
        self.put_u32(bytes.len() as u32);
        self.put_fixed_opaque(bytes);
    }

    /// `string<>`: as opaque, no terminating NUL.
    pub fn put_string(&mut self, s: &str) {
        self.put_opaque(s.as_bytes());
    }

    /// `T *`: 0 for absent, 1 then the value for present.
    pub fn put_optional<T>(&mut self, value: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.put_u32(0),
            Some(v) => {
                self.put_u32(1);
                put(self, v);
            }
        }
    }
}

/// Reads XDR items from a payload, never past its end and never allocating more than a
/// caller-given maximum.
pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub fn new(buf: &'a [u8]) -> XdrReader<'a> {
        XdrReader { buf, pos: 0 }
    }

    /// Bytes not read yet. (libvirt ignores trailing bytes after a complete argument.)
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let left = self.remaining();
        if n > left {
            return Err(XdrError::Truncated { wanted: n, left });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn get_u32(&mut self) -> Result<u32, XdrError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    pub fn get_i32(&mut self) -> Result<i32, XdrError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    pub fn get_u64(&mut self) -> Result<u64, XdrError> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// Any non-zero value is true (libvirtd is as lenient).
    pub fn get_bool(&mut self) -> Result<bool, XdrError> {
        Ok(self.get_u32()? != 0)
    }

    /// `opaque[N]`.
    pub fn get_fixed_opaque(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let bytes = self.take(n)?;
        self.take(padding(n))?;
        Ok(bytes)
    }

    /// `opaque<max>`.
    pub fn get_opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.get_u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        self.get_fixed_opaque(len)
    }

    /// `string<max>`.
    pub fn get_string(&mut self, max: usize) -> Result<String, XdrError> {
        let bytes = self.get_opaque(max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| XdrError::InvalidUtf8)
    }

    /// `T *`.
    pub fn get_optional<T>(
        &mut self,
        get: impl FnOnce(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Option<T>, XdrError> {
        if self.get_bool()? {
            get(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A value with one XDR form that reads itself: a procedure's arguments are one of these
/// (usually a tuple), so no handler decodes by hand.
pub trait Decode: Sized {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError>;

    /// libvirt's convention for a call's `flags` word: the bits set that the call does not
    /// support. Only a flags type has any; a tuple has those of its items.
    fn unsupported_flags(&self) -> u32 {
        0
    }
}

/// A value with one XDR form that writes itself: what a procedure returns.
pub trait Encode {
    fn encode(&self, w: &mut XdrWriter);
}

macro_rules! xdr_scalar {
    ($($t:ty => $get:ident, $put:ident;)*) => {$(
        impl Decode for $t {
            fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
                r.$get()
            }
        }
        impl Encode for $t {
            fn encode(&self, w: &mut XdrWriter) {
                w.$put(*self);
            }
        }
    )*};
}

xdr_scalar! {
    u32 => get_u32, put_u32;
    i32 => get_i32, put_i32;
    u64 => get_u64, put_u64;
    bool => get_bool, put_bool;
}

macro_rules! xdr_tuple {
    ($($name:ident),+) => {
        impl<$($name: Decode),+> Decode for ($($name,)+) {
            fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
                Ok(($($name::decode(r)?,)+))
            }
            #[allow(non_snake_case)]
            fn unsupported_flags(&self) -> u32 {
                let ($($name,)+) = self;
                0 $(| $name.unsupported_flags())+
            }
        }
        impl<$($name: Encode),+> Encode for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, w: &mut XdrWriter) {
                let ($($name,)+) = self;
                $($name.encode(w);)+
            }
        }
    };
}

xdr_tuple!(A);
xdr_tuple!(A, B);
xdr_tuple!(A, B, C);
xdr_tuple!(A, B, C, D);
xdr_tuple!(A, B, C, D, E);

/// No arguments, or no result.
impl Decode for () {
    fn decode(_: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(())
    }
}

impl Encode for () {
    fn encode(&self, _: &mut XdrWriter) {}
}

/// `string<>` in a result (arguments use a bounded type of their program).
impl Encode for str {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_string(self);
    }
}

impl Encode for String {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_string(self);
    }
}

/// `T<>`: a counted array.
impl<T: Encode> Encode for [T] {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_u32(self.len() as u32);
        for item in self {
            item.encode(w);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut XdrWriter) {
        self.as_slice().encode(w);
    }
}

/// `T *`: absent or present.
impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_optional(self.as_ref(), |w, v| v.encode(w));
    }
}

/// `T *` in arguments.
impl<T: Decode> Decode for Option<T> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_optional(T::decode)
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, w: &mut XdrWriter) {
        (**self).encode(w);
    }
}

/// `opaque[N]` (a UUID).
impl<const N: usize> Decode for [u8; N] {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(r.get_fixed_opaque(N)?);
        Ok(out)
    }
}

impl<const N: usize> Encode for [u8; N] {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_fixed_opaque(self);
    }
}

/// `opaque<>` in a result.
pub struct Opaque(pub Vec<u8>);

impl Encode for Opaque {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_opaque(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip_big_endian() {
        let mut w = XdrWriter::new();
        w.put_u32(0x0102_0304);
        w.put_i32(-1);
        w.put_u64(0x0102_0304_0506_0708);
        w.put_bool(true);
        let bytes = w.into_inner();
        assert_eq!(&bytes[..4], &[1, 2, 3, 4]);
        assert_eq!(&bytes[4..8], &[0xff; 4]);
        assert_eq!(bytes.len(), 4 + 4 + 8 + 4);
        let mut r = XdrReader::new(&bytes);
        assert_eq!(r.get_u32(), Ok(0x0102_0304));
        assert_eq!(r.get_i32(), Ok(-1));
        assert_eq!(r.get_u64(), Ok(0x0102_0304_0506_0708));
        assert_eq!(r.get_bool(), Ok(true));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn strings_are_padded_to_four_bytes() {
        let mut w = XdrWriter::new();
        w.put_string("test:///default");
        // The worked example of the protocol notes: length 15, 15 bytes, 1 byte of padding.
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 4 + 16);
        assert_eq!(&bytes[..4], &[0, 0, 0, 15]);
        assert_eq!(bytes[19], 0);
        let mut r = XdrReader::new(&bytes);
        assert_eq!(r.get_string(100).unwrap(), "test:///default");
        for (s, len) in [("", 4), ("a", 8), ("abcd", 8), ("abcde", 12)] {
            let mut w = XdrWriter::new();
            w.put_string(s);
            assert_eq!(w.len(), len, "{s:?}");
        }
    }

    #[test]
    fn bounds_are_checked_before_allocating() {
        let mut w = XdrWriter::new();
        w.put_u32(u32::MAX); // a hostile length
        let bytes = w.into_inner();
        assert_eq!(
            XdrReader::new(&bytes).get_string(4096),
            Err(XdrError::TooLong {
                len: u32::MAX as usize,
                max: 4096
            })
        );
        let mut w = XdrWriter::new();
        w.put_u32(8);
        w.put_fixed_opaque(b"abc");
        let bytes = w.into_inner();
        assert_eq!(
            XdrReader::new(&bytes).get_opaque(100),
            Err(XdrError::Truncated { wanted: 8, left: 4 })
        );
        assert_eq!(
            XdrReader::new(&[0, 0]).get_u32(),
            Err(XdrError::Truncated { wanted: 4, left: 2 })
        );
    }

    #[test]
    fn optional_and_fixed_opaque() {
        let uuid = [7u8; 16];
        let mut w = XdrWriter::new();
        w.put_optional(Some("x"), |w, s| w.put_string(s));
        w.put_optional(None::<&str>, |w, s| w.put_string(s));
        w.put_fixed_opaque(&uuid);
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 4 + 8 + 4 + 16);
        let mut r = XdrReader::new(&bytes);
        assert_eq!(
            r.get_optional(|r| r.get_string(10)).unwrap(),
            Some("x".to_string())
        );
        assert_eq!(r.get_optional(|r| r.get_string(10)).unwrap(), None);
        assert_eq!(r.get_fixed_opaque(16).unwrap(), &uuid);
        let mut r = XdrReader::new(&[0, 0, 0, 9]); // any non-zero discriminant means present
        assert!(
            r.get_optional(|r| r.get_u32()).is_err(),
            "present but missing value"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut w = XdrWriter::new();
        w.put_opaque(&[0xff, 0xfe]);
        assert_eq!(
            XdrReader::new(&w.into_inner()).get_string(10),
            Err(XdrError::InvalidUtf8)
        );
    }

    #[test]
    fn tuples_decode_in_order_and_gather_flags() {
        struct OddFlags(u32);
        impl Decode for OddFlags {
            fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
                r.get_u32().map(OddFlags)
            }
            fn unsupported_flags(&self) -> u32 {
                self.0 & 1
            }
        }
        let mut w = XdrWriter::new();
        (7u32, [9u8; 3], Some(-2i32), 3u32).encode(&mut w);
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 4 + 4 + 8 + 4);
        let mut r = XdrReader::new(&bytes);
        let (a, b, c, f) = <(u32, [u8; 3], Option<i32>, OddFlags)>::decode(&mut r).unwrap();
        assert_eq!((a, b, c), (7, [9; 3], Some(-2)));
        assert_eq!((a, b, c, f).unsupported_flags(), 1);
        let truncated = <(u32, u64)>::decode(&mut XdrReader::new(&bytes[..8]));
        assert!(truncated.is_err());
    }
}
