//! Configuration layering for both binaries: defaults in code, then a TOML file (`--config`),
//! then `WORKFORCE_*` environment variables, then flags. clap resolves a flag over its variable
//! (every option declares `env = "WORKFORCE_..."`), so a binary's arguments arrive as one
//! [`Overrides`] layer of `Option`s. Pure apart from reading the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::servers::ServersError;
use crate::ids::NameError;

/// A binary's settings: one serde struct with defaults in code.
pub trait Settings: Default + DeserializeOwned {
    /// Checks what the types cannot (non-zero sizes, existing directories).
    fn validate(&self) -> Result<(), ConfigError>;
}

/// The command line's layer: flags and their `WORKFORCE_*` variables, each `None` when unset.
pub trait Overrides {
    type Settings: Settings;

    /// The `--config FILE` to read, if any.
    fn config_file(&self) -> Option<&Path>;

    /// Writes every option that is set over `settings`.
    fn apply(&self, settings: &mut Self::Settings) -> Result<(), ConfigError>;
}

/// Defaults, then the file, then `overrides`; validated.
pub fn load<O: Overrides>(overrides: &O) -> Result<O::Settings, ConfigError> {
    let mut settings = match overrides.config_file() {
        Some(path) => read_file(path)?,
        None => O::Settings::default(),
    };
    overrides.apply(&mut settings)?;
    settings.validate()?;
    Ok(settings)
}

/// A TOML file over the defaults: keys it leaves out keep their default (the settings struct
/// is `#[serde(default)]`), unknown keys are errors (`deny_unknown_fields`).
pub fn read_file<S: DeserializeOwned>(path: &Path) -> Result<S, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// `*target = value` when the option was given.
pub fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(value) = value {
        *target = value.clone();
    }
}

/// Why a binary's configuration cannot be used. Never retryable: something must be changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("invalid {field} {value:?}")]
    Name {
        field: String,
        value: String,
        #[source]
        source: NameError,
    },
    #[error("invalid nats_url")]
    Servers(#[from] ServersError),
    #[error("cannot render the configuration as TOML")]
    Render(#[from] toml::ser::Error),
}

impl ConfigError {
    /// `field` is invalid for `reason`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;
    use crate::duration;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Toy {
        name: String,
        #[serde(with = "duration")]
        wait: Duration,
        size: u32,
    }

    impl Default for Toy {
        fn default() -> Self {
            Self {
                name: "default".into(),
                wait: Duration::from_secs(1),
                size: 1,
            }
        }
    }

    impl Settings for Toy {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.size == 0 {
                return Err(ConfigError::invalid("size", "must be at least 1"));
            }
            Ok(())
        }
    }

    #[derive(Default)]
    struct Args {
        config: Option<PathBuf>,
        name: Option<String>,
        size: Option<u32>,
    }

    impl Overrides for Args {
        type Settings = Toy;
        fn config_file(&self) -> Option<&Path> {
            self.config.as_deref()
        }
        fn apply(&self, toy: &mut Toy) -> Result<(), ConfigError> {
            set(&mut toy.name, &self.name);
            set(&mut toy.size, &self.size);
            Ok(())
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), text).expect("write config");
        file
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let config = file("name = \"file\"\nwait = \"5s\"\n");
        let args = Args {
            config: Some(config.path().to_owned()),
            name: Some("flag".into()),
            ..Args::default()
        };
        let toy = load(&args).expect("load");
        assert_eq!(
            toy,
            Toy {
                name: "flag".into(),
                wait: Duration::from_secs(5),
                size: 1,
            }
        );
    }

    #[test]
    fn without_a_file_the_defaults_are_overridden() {
        let toy = load(&Args {
            size: Some(7),
            ..Args::default()
        })
        .expect("load");
        assert_eq!((toy.name.as_str(), toy.size), ("default", 7));
    }

    #[test]
    fn the_result_is_validated_and_file_errors_name_the_file() {
        let err = load(&Args {
            size: Some(0),
            ..Args::default()
        })
        .expect_err("size 0");
        assert_eq!(err.to_string(), "invalid size: must be at least 1");

        let config = file("nmae = \"typo\"\n");
        let err = load(&Args {
            config: Some(config.path().to_owned()),
            ..Args::default()
        })
        .expect_err("typo");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&config.path().display().to_string())
        );
        let source = std::error::Error::source(&err).expect("source").to_string();
        assert!(source.contains("nmae"), "{source}");

        let err = load(&Args {
            config: Some("/no/such/file.toml".into()),
            ..Args::default()
        })
        .expect_err("missing");
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    }
}
