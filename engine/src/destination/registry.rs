//! Every configured destination by name ([`Destinations`], from `--destinations FILE` or only
//! `local`), the default one, and what `nkvm destinations list` shows of each ([`DestinationInfo`]:
//! names, kinds and settings, never a secret).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::config::{DestinationsConfig, KindConfig};
use super::{Destination, DestinationError};

/// Every configured destination and the default one. Cheap to clone (destinations share their
/// connection settings). Two registries are equal when they come from the same configuration.
#[derive(Debug, Clone)]
pub struct Destinations {
    config: DestinationsConfig,
    list: Vec<Destination>,
    /// `<data-dir>/artifacts`: where archives of runs recorded before destinations existed are
    /// (their history row has a local path and no destination).
    legacy_dir: Option<PathBuf>,
}

impl PartialEq for Destinations {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.legacy_dir == other.legacy_dir
    }
}

impl Eq for Destinations {}

/// One destination as `nkvm destinations list` and the UI show it: no secret, only where secrets
/// are referenced from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationInfo {
    pub name: String,
    /// `local`, `s3`, `sftp` or `ftps`.
    pub kind: String,
    /// Whether it is the default destination.
    pub default: bool,
    /// Where archives go: a path or a `s3://`, `sftp://`, `ftps://` URI.
    pub location: String,
    /// The non-secret settings (`endpoint`, `region`, `part_size`, …) and the references of the
    /// secrets (`environment variable X`, `file /path`), never their values.
    pub settings: BTreeMap<String, String>,
}

impl Destinations {
    /// From the destinations file when one is given, else only `local` (`<data_dir>/artifacts`).
    pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<Self, DestinationError> {
        let config = match file {
            Some(path) => DestinationsConfig::load(path, data_dir)
                .map_err(|(origin, message)| DestinationError::Config { origin, message })?,
            None => DestinationsConfig::local_only(data_dir),
        };
        let mut destinations = Self::from_config(&config)?;
        destinations.legacy_dir = Some(crate::backup::artifact::artifacts_dir(data_dir));
        Ok(destinations)
    }

    /// Only `local`, at `<data_dir>/artifacts`.
    #[must_use]
    pub fn local_only(data_dir: &Path) -> Self {
        let config = DestinationsConfig::local_only(data_dir);
        let list = config
            .destinations
            .iter()
            .filter_map(|c| Destination::from_config(c).ok())
            .collect();
        Self {
            config,
            list,
            legacy_dir: Some(crate::backup::artifact::artifacts_dir(data_dir)),
        }
    }

    /// Builds every destination of a validated configuration.
    pub fn from_config(config: &DestinationsConfig) -> Result<Self, DestinationError> {
        let list = config
            .destinations
            .iter()
            .map(Destination::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            config: config.clone(),
            list,
            legacy_dir: None,
        })
    }

    /// The destination called `name`.
    pub fn get(&self, name: &str) -> Result<&Destination, DestinationError> {
        self.list
            .iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| DestinationError::Unknown {
                name: name.to_owned(),
                known: self.names().join(", "),
            })
    }

    /// The destination called `name`, or the default one for `None`.
    pub fn get_or_default(&self, name: Option<&str>) -> Result<&Destination, DestinationError> {
        match name {
            Some(name) => self.get(name),
            None => Ok(self.default_destination()),
        }
    }

    /// The default destination (`default_destination`, else `local`).
    #[must_use]
    pub fn default_destination(&self) -> &Destination {
        self.get(&self.config.default_destination)
            .unwrap_or_else(|_| &self.list[0])
    }

    /// Every destination, in the file's order (`local` first when the file does not define it).
    pub fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.list.iter()
    }

    /// Every destination's name, in the file's order.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(Destination::name).collect()
    }

    /// Where archives of runs recorded before destinations existed are (`<data-dir>/artifacts`),
    /// when the registry was loaded for a data directory.
    #[must_use]
    pub fn legacy_dir(&self) -> Option<&Path> {
        self.legacy_dir.as_deref()
    }

    /// Names, kinds and non-secret settings of every destination, for listings.
    #[must_use]
    pub fn describe(&self) -> Vec<DestinationInfo> {
        self.config
            .destinations
            .iter()
            .zip(&self.list)
            .map(|(config, destination)| {
                let mut settings = BTreeMap::new();
                let mut set = |key: &str, value: String| {
                    settings.insert(key.to_owned(), value);
                };
                match &config.kind {
                    KindConfig::Local(c) => set("path", c.path.display().to_string()),
                    KindConfig::S3(c) => {
                        set(
                            "endpoint",
                            c.endpoint.as_str().trim_end_matches('/').to_owned(),
                        );
                        set("bucket", c.bucket.clone());
                        set("prefix", c.prefix.clone());
                        set("region", c.region.clone());
                        set("path_style", c.path_style.to_string());
                        set("part_size", c.part_size.to_string());
                        set("access_key_id", c.access_key_id.to_string());
                        set("secret_access_key", c.secret_access_key.to_string());
                        if let Some(ca) = &c.ca_file {
                            set("ca_file", ca.display().to_string());
                        }
                    }
                    KindConfig::Sftp(c) => {
                        set("host", c.host.clone());
                        set("port", c.port.to_string());
                        set("user", c.user.clone());
                        set("path", c.path.clone());
                        set("private_key_file", c.private_key_file.display().to_string());
                        set("known_hosts_file", c.known_hosts_file.display().to_string());
                    }
                    KindConfig::Ftps(c) => {
                        set("host", c.host.clone());
                        set("port", c.port.to_string());
                        set("user", c.user.clone());
                        set("path", c.path.clone());
                        set("password", c.password.to_string());
                        if let Some(ca) = &c.ca_file {
                            set("ca_file", ca.display().to_string());
                        }
                        if c.insecure_plain_ftp {
                            set("insecure_plain_ftp", "true".to_owned());
                        }
                    }
                }
                DestinationInfo {
                    name: config.name.clone(),
                    kind: destination.kind().as_str().to_owned(),
                    default: config.name == self.config.default_destination,
                    location: destination.uri(""),
                    settings,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_name_secret_references_never_values() {
        let text = "default_destination: offsite\ndestinations:\n  - {name: offsite, type: s3, \
                    endpoint: 'https://s3.example', bucket: b, prefix: p, \
                    access_key_id_env: AKID, secret_access_key_file: /etc/nkvm/sak}\n";
        let config =
            DestinationsConfig::parse(text, Path::new("/etc/nkvm"), Path::new("/data")).unwrap();
        let destinations = Destinations::from_config(&config).unwrap();
        assert_eq!(destinations.names(), ["local", "offsite"]);
        assert_eq!(destinations.default_destination().name(), "offsite");
        assert_eq!(destinations.get_or_default(None).unwrap().name(), "offsite");
        let described = destinations.describe();
        assert_eq!(described[0].kind, "local");
        assert!(!described[0].default);
        assert_eq!(described[0].location, "/data/artifacts");
        let offsite = &described[1];
        assert!(offsite.default);
        assert_eq!(offsite.location, "s3://b/p");
        assert_eq!(
            offsite.settings["access_key_id"],
            "environment variable AKID"
        );
        assert_eq!(offsite.settings["secret_access_key"], "file /etc/nkvm/sak");
        assert_eq!(offsite.settings["part_size"], (64u64 << 20).to_string());
        let error = destinations.get("nope").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no destination named \"nope\" is configured (configured: local, offsite)"
        );
        assert_eq!(destinations, Destinations::from_config(&config).unwrap());
        assert_ne!(destinations, Destinations::local_only(Path::new("/data")));
    }
}
