//! Properties of `pin::to_json`: any JSON document (JSON is YAML) reads back as the same value,
//! compact or pretty-printed; YAML written in block style from the same value does too.

use proptest::prelude::*;
use serde_json::{Map, Value};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        // Text that looks like other types, YAML 1.1 booleans, and anything at all.
        prop_oneof![
            Just("yes".to_owned()),
            Just("on".to_owned()),
            Just("1.0".to_owned()),
            Just("null".to_owned()),
            Just("0x1F".to_owned()),
            Just("- x".to_owned()),
            Just("a: b".to_owned()),
            Just("#".to_owned()),
            ".*",
        ]
        .prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z0-9_./~-]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Block-style YAML for a value: every string double-quoted (JSON escapes are YAML escapes),
/// numbers, booleans and null as plain scalars.
fn block_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Array(a) if !a.is_empty() => {
            for x in a {
                out.push_str(&pad);
                out.push('-');
                if x.is_object() && !x.as_object().unwrap().is_empty()
                    || x.is_array() && !x.as_array().unwrap().is_empty()
                {
                    out.push('\n');
                    block_yaml(x, indent + 2, out);
                } else {
                    out.push(' ');
                    out.push_str(&x.to_string());
                    out.push('\n');
                }
            }
        }
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                out.push_str(&pad);
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if x.is_object() && !x.as_object().unwrap().is_empty()
                    || x.is_array() && !x.as_array().unwrap().is_empty()
                {
                    out.push('\n');
                    block_yaml(x, indent + 2, out);
                } else {
                    out.push(' ');
                    out.push_str(&x.to_string());
                    out.push('\n');
                }
            }
        }
        x => {
            out.push_str(&pad);
            out.push_str(&x.to_string());
            out.push('\n');
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn json_reads_back_as_itself(v in value()) {
        prop_assume!(!v.is_null());
        for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
            let docs = pin::to_json(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(docs.len(), 1);
            prop_assert_eq!(&docs[0].value, &v, "{}", text);
        }
        let mut yaml = String::new();
        block_yaml(&v, 0, &mut yaml);
        let docs = pin::to_json(yaml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}:\n{yaml}")))?;
        prop_assert_eq!(&docs[0].value, &v, "{}", yaml);
        // Every recorded pointer resolves.
        for p in docs[0].lines.keys() {
            prop_assert!(docs[0].value.pointer(p).is_some(), "{}", p);
        }
    }
}
