//! `remote_typed_param`: the named, typed values of libvirt's statistics calls (block stats,
//! CPU stats, job stats, domstats records). Built by the handlers, encoded as the protocol
//! says: the field name, then a union discriminated by the value's type.

use crate::rpc::xdr::{Encode, XdrWriter};

/// virTypedParameterType, with the value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i32),
    UInt(u32),
    LLong(i64),
    ULLong(u64),
    Boolean(bool),
    String(String),
}

impl Value {
    fn type_code(&self) -> i32 {
        match self {
            Value::Int(_) => 1,
            Value::UInt(_) => 2,
            Value::LLong(_) => 3,
            Value::ULLong(_) => 4,
            Value::Boolean(_) => 6,
            Value::String(_) => 7,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TypedParam {
    pub field: String,
    pub value: Value,
}

impl Encode for TypedParam {
    fn encode(&self, w: &mut XdrWriter) {
        w.put_string(&self.field);
        w.put_i32(self.value.type_code());
        match &self.value {
            Value::Int(v) => w.put_i32(*v),
            Value::UInt(v) => w.put_u32(*v),
            Value::LLong(v) => w.put_u64(*v as u64),
            Value::ULLong(v) => w.put_u64(*v),
            Value::Boolean(v) => w.put_i32(i32::from(*v)),
            Value::String(v) => w.put_string(v),
        }
    }
}

/// An ordered list of parameters, built one named value at a time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypedParams(pub Vec<TypedParam>);

impl TypedParams {
    pub fn push(&mut self, field: impl Into<String>, value: Value) -> &mut Self {
        self.0.push(TypedParam {
            field: field.into(),
            value,
        });
        self
    }

    pub fn ullong(&mut self, field: impl Into<String>, v: u64) -> &mut Self {
        self.push(field, Value::ULLong(v))
    }

    pub fn llong(&mut self, field: impl Into<String>, v: i64) -> &mut Self {
        self.push(field, Value::LLong(v))
    }

    pub fn uint(&mut self, field: impl Into<String>, v: u32) -> &mut Self {
        self.push(field, Value::UInt(v))
    }

    pub fn int(&mut self, field: impl Into<String>, v: i32) -> &mut Self {
        self.push(field, Value::Int(v))
    }

    pub fn string(&mut self, field: impl Into<String>, v: impl Into<String>) -> &mut Self {
        self.push(field, Value::String(v.into()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first `n` parameters: what a caller that gave room for `n` gets.
    pub fn truncated(mut self, n: usize) -> TypedParams {
        self.0.truncate(n);
        self
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.iter().find(|p| p.field == field).map(|p| &p.value)
    }
}

impl Encode for TypedParams {
    fn encode(&self, w: &mut XdrWriter) {
        self.0.encode(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_field_type_and_value() {
        let mut p = TypedParams::default();
        p.ullong("rd_bytes", 0x1_0000_0002).string("name", "vda");
        let mut w = XdrWriter::new();
        p.encode(&mut w);
        let bytes = w.into_inner();
        #[rustfmt::skip]
        let want = [
            0, 0, 0, 2,                                   // two parameters
            0, 0, 0, 8, b'r', b'd', b'_', b'b', b'y', b't', b'e', b's',
            0, 0, 0, 4,                                   // ULLONG
            0, 0, 0, 1, 0, 0, 0, 2,
            0, 0, 0, 4, b'n', b'a', b'm', b'e',
            0, 0, 0, 7,                                   // STRING
            0, 0, 0, 3, b'v', b'd', b'a', 0,
        ];
        assert_eq!(bytes, want);
    }

    #[test]
    fn truncation_keeps_the_first() {
        let mut p = TypedParams::default();
        p.int("a", 1).int("b", 2).int("c", 3);
        let p = p.truncated(2);
        assert_eq!(p.len(), 2);
        assert_eq!(p.get("b"), Some(&Value::Int(2)));
        assert_eq!(p.get("c"), None);
    }
}
