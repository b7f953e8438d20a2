//! Changing certificate references in `lcs.toml` in place.
//!
//! `lcs.toml` is the operator's file: it carries their comments, their order, their layout. A
//! rebind (`fix`, `fix --live`, auto-rebind) must change the references it is about and nothing
//! else, so the file is edited as a document (`toml_edit`), not re-serialised from [`Config`]:
//! only the `issuer` and `serial` values of the named connections' and routes' `certificate`
//! tables change (each value keeps the comment beside it). The result is parsed and validated as
//! [`Config`] before it is written, atomically; callers hold the store's lock around the
//! read-modify-write so two writers cannot lose each other's change.

use std::path::Path;

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::{CertRef, Config, ConfigError};

/// Sets the certificate reference of each `(id, reference)` in the file at `path` and writes it
/// back atomically; comments, order and layout are kept. An id that names no connection or
/// route that carries a `certificate` table is an [`ConfigError::Invalid`] and nothing is
/// written.
pub fn set_cert_refs(path: &Path, changes: &[(&str, &CertRef)]) -> Result<(), ConfigError> {
    let text = crate::input::read(path)?;
    let edited = edit(&text, path, changes)?;
    Config::parse(&edited, path)?;
    crate::atomic::atomic_write(path, edited.as_bytes(), None).map_err(|source| ConfigError::Io {
        path: path.into(),
        source,
    })
}

/// The edit itself, on text.
pub fn edit(text: &str, path: &Path, changes: &[(&str, &CertRef)]) -> Result<String, ConfigError> {
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                path: path.into(),
                message: e.to_string().trim_end().to_owned(),
            })?;
    for (id, reference) in changes {
        let array = ["connection", "route"]
            .into_iter()
            .find(|array| certificate_of(&mut doc, array, id).is_some());
        let Some(certificate) = array.and_then(|array| certificate_of(&mut doc, array, id)) else {
            return Err(ConfigError::Invalid {
                path: path.into(),
                field: format!("certificate of `{id}`"),
                message: format!("no connection or route `{id}` with a certificate table"),
            });
        };
        set_str(certificate, "issuer", &reference.issuer);
        set_str(certificate, "serial", reference.serial.as_str());
    }
    Ok(doc.to_string())
}

fn certificate_of<'d>(
    doc: &'d mut DocumentMut,
    array: &str,
    id: &str,
) -> Option<&'d mut dyn TableLike> {
    doc.get_mut(array)?
        .as_array_of_tables_mut()?
        .iter_mut()
        .find(|t| t.get("id").and_then(Item::as_str) == Some(id))?
        .get_mut("certificate")?
        .as_table_like_mut()
}

/// Replaces a string value, keeping the whitespace and comment around it.
fn set_str(table: &mut dyn TableLike, key: &str, new: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(value) => {
            let decor = value.decor().clone();
            *value = Value::from(new);
            *value.decor_mut() = decor;
        }
        None => {
            table.insert(key, toml_edit::value(new));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Serial;

    const TEXT: &str = r#"# my notes about this server
[service]
server = "lcs01.contoso.com"   # the FQDN clients use

[[connection]]
id = "tls-5061"
transport = "tls"
port = 5061
# renewed every year by GPO
certificate = { issuer = "CN=Old", serial = "01" }

[[route]]
id = "route-x"
domain = "x.com"
next_hop = "127.0.0.1:5071"
transport = "mtls"

[route.certificate]
issuer = "CN=Old"
serial = "01"   # keep in step with tls-5061
"#;

    #[test]
    fn only_the_references_change_and_comments_stay() {
        let to = CertRef {
            issuer: "CN=New".into(),
            serial: Serial::try_from("ABCD".to_string()).unwrap(),
        };
        let out = edit(
            TEXT,
            Path::new("lcs.toml"),
            &[("tls-5061", &to), ("route-x", &to)],
        )
        .unwrap();
        let expected = TEXT
            .replace(
                r#"{ issuer = "CN=Old", serial = "01" }"#,
                r#"{ issuer = "CN=New", serial = "ABCD" }"#,
            )
            .replace("issuer = \"CN=Old\"\n", "issuer = \"CN=New\"\n")
            .replace("serial = \"01\"   #", "serial = \"ABCD\"   #");
        assert_eq!(out, expected);
    }

    #[test]
    fn an_unknown_id_changes_nothing() {
        let to = CertRef {
            issuer: "CN=New".into(),
            serial: Serial::try_from("ABCD".to_string()).unwrap(),
        };
        let err = edit(TEXT, Path::new("lcs.toml"), &[("nope", &to)]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
    }
}
