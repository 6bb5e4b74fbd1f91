//! `--format TEMPLATE`: a small Go-template-like language over the JSON
//! documents `--json` prints (proto3 JSON names: `{{.id}}`,
//! `{{.spec.image}}`, `{{.usage.cpuUsec}}`), one output line per document,
//! as `docker ps --format` does:
//! - `{{.a.b}}`: the field; a string without quotes, anything else as JSON;
//!   a list index is a number (`{{.addresses.0}}`);
//! - `{{json .a}}`: the field as JSON; `{{.}}`/`{{json .}}`: the document;
//! - a missing field prints `<no value>` (Go's words);
//! - `\t` and `\n` in the template are a tab and a newline.

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field { path: Vec<String>, json: bool },
}

impl Template {
    /// Parses `text`; the error names what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ at {:?}", &rest[start..]))?;
            let action = after[..end].trim();
            let (json, field) = match action.strip_prefix("json ") {
                Some(f) => (true, f.trim()),
                None => (false, action),
            };
            let path = field.strip_prefix('.').ok_or_else(|| {
                format!("{{{{{action}}}}}: expected a field like .id or json .spec")
            })?;
            let path: Vec<String> = if path.is_empty() {
                Vec::new()
            } else {
                path.split('.').map(str::to_owned).collect()
            };
            if path.iter().any(String::is_empty) {
                return Err(format!("{{{{{action}}}}}: empty field name"));
            }
            pieces.push(Piece::Field { path, json });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// The template applied to one document.
    pub(crate) fn render(&self, doc: &Value) -> String {
        let mut line = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => line.push_str(t),
                Piece::Field { path, json } => {
                    let found = path.iter().try_fold(doc, |v, key| match v {
                        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                        _ => v.get(key),
                    });
                    match (found, json) {
                        (None, _) => line.push_str("<no value>"),
                        (Some(Value::String(s)), false) => line.push_str(s),
                        (Some(v), _) => line.push_str(&v.to_string()),
                    }
                }
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_json_and_escapes() {
        let doc = json!({
            "id": "abc",
            "mainPid": "42",
            "spec": {"image": "host", "labels": {"a": "1"}},
            "addresses": ["203.0.113.2"],
            "usage": {"pids": "3"},
        });
        let cases = [
            ("{{.id}}", "abc"),
            ("{{ .id }}\\t{{.spec.image}}", "abc\thost"),
            ("{{json .spec.labels}}", "{\"a\":\"1\"}"),
            ("{{json .id}}", "\"abc\""),
            ("{{.addresses.0}}", "203.0.113.2"),
            ("{{.addresses.5}}", "<no value>"),
            ("{{.nope.deeper}}", "<no value>"),
            ("id={{.id}} pids={{.usage.pids}}", "id=abc pids=3"),
            ("plain", "plain"),
        ];
        for (t, want) in cases {
            assert_eq!(
                Template::parse(t).map(|t| t.render(&doc)),
                Ok(want.to_owned()),
                "{t}"
            );
        }
        let whole = Template::parse("{{json .}}").map(|t| t.render(&doc));
        assert_eq!(
            whole.map(|s| serde_json::from_str::<Value>(&s).ok()),
            Ok(Some(doc))
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for t in ["{{.id", "{{id}}", "{{.a..b}}", "{{printf .x}}"] {
            assert!(Template::parse(t).is_err(), "{t}");
        }
    }
}
