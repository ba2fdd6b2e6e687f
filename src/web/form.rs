//! Form bodies (`application/x-www-form-urlencoded`, repeated keys kept) and the errors a form
//! shows beside its fields, taken from the same messages the API answers with.

use std::collections::BTreeMap;

use crate::http::error::ApiError;

/// A submitted form: every name with every value, in order.
#[derive(Debug, Default, Clone)]
pub struct FormData(Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> FormData {
        FormData(
            url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or("")
    }

    /// Every non-empty value of `name` (checkbox groups).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// Whether a checkbox named `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| key == name)
    }
}

/// Messages to show beside a form's fields, and one for the form as a whole.
#[derive(Debug, Default, Clone)]
pub struct FormErrors {
    fields: BTreeMap<String, String>,
    pub general: Option<String>,
}

impl FormErrors {
    /// Places a client error under the field its message names (the API's messages start with
    /// the field), or over the form. Server errors stay errors.
    pub fn from_api(error: ApiError, fields: &[&str]) -> Result<FormErrors, ApiError> {
        if matches!(error, ApiError::Internal(_)) {
            return Err(error);
        }
        let mut errors = FormErrors::default();
        if let ApiError::Invalid(invalid) = error {
            for field in invalid {
                if fields.contains(&field.field) {
                    errors.fields.insert(field.field.to_owned(), field.message);
                } else {
                    errors.general = Some(field.message);
                }
            }
            return Ok(errors);
        }
        let message = error.to_string();
        // The longest field name first, so `event_types` wins over `event`.
        let mut candidates = fields.to_vec();
        candidates.sort_by_key(|field| std::cmp::Reverse(field.len()));
        match candidates.iter().find(|field| {
            message
                .strip_prefix(**field)
                .is_some_and(|rest| rest.starts_with([' ', ':', '.', '[']))
        }) {
            Some(field) => {
                errors.fields.insert((*field).to_owned(), message);
            }
            None => errors.general = Some(message),
        }
        Ok(errors)
    }

    /// The message for `field`, or "".
    pub fn of(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// Whether there is anything to show.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_are_kept() {
        let form = FormData::parse(b"event_types=a.b&event_types=c.d&name=x%20y&flag=on");
        assert_eq!(form.all("event_types"), ["a.b", "c.d"]);
        assert_eq!(form.get("name"), "x y");
        assert_eq!(form.get("missing"), "");
        assert!(form.checked("flag") && !form.checked("other"));
    }

    #[test]
    fn errors_land_beside_the_field_they_name() {
        let errors = FormErrors::from_api(
            ApiError::Unprocessable("url must use https://, not ftp://".into()),
            &["name", "url"],
        )
        .unwrap();
        assert_eq!(errors.of("url"), "url must use https://, not ftp://");
        assert!(errors.general.is_none());
        let errors = FormErrors::from_api(ApiError::Conflict("taken".into()), &["name"]).unwrap();
        assert_eq!(errors.general.as_deref(), Some("taken"));
        assert!(FormErrors::from_api(ApiError::internal(anyhow::anyhow!("x")), &[]).is_err());
    }
}
