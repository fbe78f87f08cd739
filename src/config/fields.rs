//! The field names of the configuration types, read from their serde derives.
//!
//! A small `Deserializer` drives `FileConfig::deserialize` with made-up values and records the
//! `fields` each struct hands to `deserialize_struct`, recursing into every nested type (options,
//! lists, maps, `Spanned` values, `[profiles.NAME]`). So the list can never drift from the types:
//! it is what lets a test prove `config/hallmonitor.toml` documents every field, and lets a
//! parse error say that a misplaced key is a top-level one.

use std::cell::RefCell;

use serde::Deserialize;
use serde::de::value::{BorrowedStrDeserializer, Error};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::FileConfig;

/// One field of one configuration struct, as spelled in TOML, at one place in the file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigField {
    /// The Rust struct, e.g. `ModbusDeviceConfig`.
    pub owner: &'static str,
    /// The TOML key, e.g. `max_gap`.
    pub key: &'static str,
    /// Where it goes, dotted, `*` for a name the user picks: `devices.modbus.max_gap`,
    /// `racks.*.thresholds.*.for`. A struct used in several places has one entry per place.
    pub path: String,
}

/// Every field of every struct a configuration file may contain, the top level first.
pub fn config_fields() -> Vec<ConfigField> {
    let seen = RefCell::new(Vec::new());
    // Our own deserializer feeds every field a value of the type asked for, so this succeeds;
    // if a future type needs a shape it does not serve, the list is merely shorter and the
    // documentation test names what is missing.
    let _ = FileConfig::deserialize(Collector { seen: &seen, depth: 0, path: String::new() });
    seen.into_inner()
}

/// The keys of the file's top level (`site`, `mqtt`, ..., `profiles_dir`).
pub fn top_level_keys() -> Vec<&'static str> {
    config_fields().into_iter().filter(|f| f.path == f.key).map(|f| f.key).collect()
}

/// Nesting deeper than this means a recursive type; stop rather than overflow the stack.
const MAX_DEPTH: usize = 32;

/// toml's `Spanned<T>` deserializes as a struct of this name with start/end/value fields.
const SPANNED_PREFIX: &str = "$__serde_spanned_private";

#[derive(Clone)]
struct Collector<'a> {
    seen: &'a RefCell<Vec<ConfigField>>,
    depth: usize,
    /// Dotted path of the value being collected.
    path: String,
}

impl<'a> Collector<'a> {
    /// The collector of a nested value, `segment` further down the path (none for wrappers
    /// such as `Option`, lists and `Spanned`, which TOML does not show).
    fn deeper(&self, segment: Option<&str>) -> Result<Self, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom("configuration types nest too deeply"));
        }
        let path = match segment {
            None => self.path.clone(),
            Some(s) if self.path.is_empty() => s.to_owned(),
            Some(s) => format!("{}.{s}", self.path),
        };
        Ok(Collector { seen: self.seen, depth: self.depth + 1, path })
    }
}

macro_rules! made_up_values {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Collector<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("a configuration type asks for a self-describing value"))
    }

    made_up_values! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_borrowed_str("x"),
        deserialize_string => visit_borrowed_str("x"),
        deserialize_identifier => visit_borrowed_str("x"),
        deserialize_unit => visit_unit(),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self.deeper(None)?)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self.deeper(None)?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(OneElement { inner: Some(self.deeper(None)?) })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let key = self.deeper(None)?;
        visitor.visit_map(Entries { keys: Vec::new(), next: 0, key_value: Some(key), parent: self, named: false })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let named = !name.starts_with(SPANNED_PREFIX);
        if named {
            let at = |key: &str| if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) };
            self.seen.borrow_mut().extend(fields.iter().map(|key| ConfigField { owner: name, key, path: at(key) }));
        }
        visitor.visit_map(Entries { keys: fields.to_vec(), next: 0, key_value: None, parent: self, named })
    }

    serde::forward_to_deserialize_any! {
        bytes byte_buf unit_struct tuple tuple_struct enum ignored_any i128 u128
    }
}

/// A list with one element, so the element type is visited.
struct OneElement<'a> {
    inner: Option<Collector<'a>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.inner.take() {
            Some(c) => seed.deserialize(c).map(Some),
            None => Ok(None),
        }
    }
}

/// A struct's fields by name (or, for a map, one entry with a made-up key), each value
/// collected in turn. `Spanned`'s start/end fields get a number like any other.
struct Entries<'a> {
    keys: Vec<&'static str>,
    next: usize,
    /// For a map: the one entry's key, still to be produced by the collector.
    key_value: Option<Collector<'a>>,
    parent: Collector<'a>,
    /// A struct whose fields are TOML keys (not `Spanned`'s private ones, not a map).
    named: bool,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if let Some(c) = self.key_value.take() {
            return seed.deserialize(c).map(Some);
        }
        let Some(key) = self.keys.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(BorrowedStrDeserializer::<Error>::new(key)).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let segment = match (self.named, self.next.checked_sub(1).and_then(|i| self.keys.get(i))) {
            (true, Some(key)) => Some(*key),
            (false, _) if self.keys.is_empty() => Some("*"),
            _ => None,
        };
        seed.deserialize(self.parent.deeper(segment)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_nested_types_too() {
        let fields = config_fields();
        let has = |owner: &str, key: &str| fields.iter().any(|f| f.owner == owner && f.key == key);
        assert!(has("FileConfig", "profiles_dir"));
        assert!(has("ModbusDeviceConfig", "max_gap"));
        assert!(has("SnmpDeviceConfig", "priv"), "renamed fields appear as written in TOML");
        assert!(has("ThresholdConfig", "for"));
        assert!(has("ProfileConfig", "addressing"), "[profiles.NAME] is followed");
        assert!(has("PointConfig", "type"));
        assert!(!fields.iter().any(|f| f.owner.starts_with('$')), "toml's Spanned is not a config type");
        let paths: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"devices.modbus.max_gap"), "{paths:#?}");
        assert!(paths.contains(&"racks.*.thresholds.*.for"), "{paths:#?}");
        assert!(paths.contains(&"profiles.*.points.type"), "{paths:#?}");
        assert!(paths.contains(&"profiles_dir"), "{paths:#?}");
        assert_eq!(top_level_keys().first(), Some(&"site"));
    }
}
