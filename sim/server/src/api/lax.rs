//! pydantic's lax-mode coercions for the scalar fields of vLLM's request models: `"8"` and `8.0`
//! are the integer 8, `"yes"` is true.
use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A boolean: `true`/`false`, 0 and 1 (integer or float), and the strings `0 off f false n no`
/// and `1 on t true y yes` in any case (not trimmed); null is false.
pub fn from_value(v: &Value) -> Result<bool, String> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Ok(false),
            Some(1.0) => Ok(true),
            _ => Err("Input should be a valid boolean".into()),
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
            _ => Err("Input should be a valid boolean, unable to interpret input".into()),
        },
        _ => Err("Input should be a valid boolean".into()),
    }
}

pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    from_value(&Value::deserialize(d)?).map_err(D::Error::custom)
}

/// An integer: a JSON integer, a float without a fractional part (within 64 bits), a boolean,
/// or a string of one (trimmed, optional sign, `.0` allowed).
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    let int_from_f64 = |x: f64| {
        if x.fract() != 0.0 {
            Err("Input should be a valid integer, got a number with a fractional part")
        } else if x.abs() >= 9.223_372_036_854_776e18 || !x.is_finite() {
            Err("Unable to parse input string as an integer, exceeded maximum size")
        } else {
            Ok(x as i64)
        }
    };
    let n = match &v {
        Value::Null => return Ok(None),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(i),
            None => int_from_f64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => {
            let t = s.trim();
            let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
            let digits = whole.strip_prefix(['+', '-']).unwrap_or(whole);
            if !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b == b'0')
            {
                whole.parse::<i64>().map_err(
                    |_| "Unable to parse input string as an integer, exceeded maximum size",
                )
            } else {
                Err("Input should be a valid integer, unable to parse string as an integer")
            }
        }
        _ => Err("Input should be a valid integer"),
    };
    n.map(Some).map_err(D::Error::custom)
}

/// A number: a JSON number, a boolean, or a string of one (trimmed).
pub fn float<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(f64::from(u8::from(b)))),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
            D::Error::custom("Input should be a valid number, unable to parse string as a number")
        }),
        _ => Err(D::Error::custom("Input should be a valid number")),
    }
}

/// Python's truthiness of a JSON value (what vLLM's `before` validators test).
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null | Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Bool(true)) => true,
    }
}

#[cfg(test)]
mod tests {
    use crate::api::{ChatRequest, Validated};
    use crate::errors::ApiError;

    fn chat(body: &str) -> Result<Validated, ApiError> {
        ChatRequest::parse(body.as_bytes())?.validate()
    }

    #[test]
    fn booleans_and_numbers_are_read_as_pydantic_lax_mode_does() {
        let with = |field: &str, v: &str| {
            chat(&format!(
                r#"{{"messages":[{{"role":"user","content":"hi"}}],"{field}":{v}}}"#
            ))
        };
        for v in [
            "true", "1", "1.0", "\"yes\"", "\"true\"", "\"1\"", "\"on\"", "\"y\"", "\"t\"",
            "\"TRUE\"", "\"Yes\"",
        ] {
            assert!(with("stream", v).expect(v).stream, "{v}");
            assert!(with("ignore_eos", v).expect(v).ignore_eos, "{v}");
        }
        for v in [
            "false",
            "0",
            "0.0",
            "null",
            "\"no\"",
            "\"false\"",
            "\"0\"",
            "\"off\"",
            "\"n\"",
            "\"f\"",
        ] {
            assert!(!with("stream", v).expect(v).stream, "{v}");
        }
        for v in ["2", "1.5", "\" true\"", "\"maybe\"", "\"\"", "[]", "{}"] {
            assert!(with("stream", v).is_err(), "{v}");
        }
        for (v, want) in [
            ("\"10\"", 10),
            ("\" 10\"", 10),
            ("\"+3\"", 3),
            ("\"10.0\"", 10),
            ("2.0", 2),
            ("true", 1),
        ] {
            assert_eq!(
                with("max_tokens", v).expect(v).max_tokens,
                Some(want),
                "{v}"
            );
        }
        for v in [
            "\"1e1\"",
            "\"0x10\"",
            "3.0000000001",
            "1e308",
            "\"ten\"",
            "[1]",
        ] {
            assert!(with("max_tokens", v).is_err(), "{v}");
        }
        assert!(with("temperature", "\"0.5\"").is_ok());
    }
}
