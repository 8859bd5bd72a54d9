//! The environment as the settings read it: each value trimmed, an empty one taken as unset,
//! and every check's failure turned into a `ConfigError` naming the setting and its value.

use super::ConfigError;
use super::checks::{Check, Reason};

/// The settings as read: each trimmed, an empty one taken as unset.
pub(super) struct Lookup<F>(pub(super) F);

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    pub(super) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn required(
        &self,
        name: &'static str,
        hint: &'static str,
        check: impl Fn(&str) -> Check<()>,
    ) -> Result<String, ConfigError> {
        let v = self.get(name).ok_or(ConfigError::Missing { name, hint })?;
        check(&v).map_err(|reason| invalid(name, &v, reason))?;
        Ok(v)
    }

    pub(super) fn parsed<T>(
        &self,
        name: &'static str,
        default: T,
        parse: impl Fn(&str) -> Check<T>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse(&v).map_err(|reason| invalid(name, &v, reason)),
        }
    }

    /// A setting that may be unset, checked when it is set.
    pub(super) fn optional<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Check<T>,
    ) -> Result<Option<T>, ConfigError> {
        self.get(name)
            .map(|v| parse(&v).map_err(|reason| invalid(name, &v, reason)))
            .transpose()
    }

    /// A comma-separated list: items trimmed, empty ones dropped, each checked (and made
    /// canonical) by `item`, duplicates dropped in order. `None` when unset; with `what`, a
    /// list that names nothing is refused ("names no <what>").
    pub(super) fn list<T: PartialEq>(
        &self,
        name: &'static str,
        what: Option<&str>,
        item: impl Fn(&str) -> Check<T>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let mut items = Vec::new();
        for x in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let x = item(x).map_err(|reason| invalid(name, &v, reason))?;
            if !items.contains(&x) {
                items.push(x);
            }
        }
        match what {
            Some(what) if items.is_empty() => {
                Err(invalid(name, &v, Reason(format!("names no {what}"))))
            }
            _ => Ok(Some(items)),
        }
    }
}

pub(super) fn invalid(name: &'static str, value: &str, reason: Reason) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason,
    }
}
