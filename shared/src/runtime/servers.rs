//! [`NatsServers`]: the `--nats` value of every binary, a comma-separated list of NATS server
//! URLs, parsed once. Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use async_nats::ServerAddr;
use serde::{Deserialize, Serialize};

pub const DEFAULT_SERVER: &str = "nats://127.0.0.1:4222";

/// One or more NATS servers the client may connect to (it picks one and fails over to the
/// others). Written as `nats://a:4222,nats://b:4222`; spaces around commas are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NatsServers {
    addrs: Vec<ServerAddr>,
    /// The list as written, for messages and `--print-config`.
    text: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServersError {
    #[error(
        "no NATS server URL given; expected e.g. nats://127.0.0.1:4222 (several separated by commas)"
    )]
    Empty,
    #[error("invalid NATS server URL {url:?}")]
    Url {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

impl NatsServers {
    pub fn parse(list: &str) -> Result<Self, ServersError> {
        let parts: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(ServersError::Empty);
        }
        let addrs = parts
            .iter()
            .map(|part| {
                part.parse::<ServerAddr>()
                    .map_err(|source| ServersError::Url {
                        url: (*part).to_owned(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            addrs,
            text: parts.join(","),
        })
    }

    pub fn addrs(&self) -> &[ServerAddr] {
        &self.addrs
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Default for NatsServers {
    /// [`DEFAULT_SERVER`], where `nats-server` listens by default.
    fn default() -> Self {
        Self::parse(DEFAULT_SERVER).expect("the default server URL parses")
    }
}

impl FromStr for NatsServers {
    type Err = ServersError;
    fn from_str(list: &str) -> Result<Self, ServersError> {
        Self::parse(list)
    }
}

impl TryFrom<String> for NatsServers {
    type Error = ServersError;
    fn try_from(list: String) -> Result<Self, ServersError> {
        Self::parse(&list)
    }
}

impl From<NatsServers> for String {
    fn from(servers: NatsServers) -> String {
        servers.text
    }
}

impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl async_nats::ToServerAddrs for NatsServers {
    type Iter = std::vec::IntoIter<ServerAddr>;
    fn to_server_addrs(&self) -> std::io::Result<Self::Iter> {
        Ok(self.addrs.clone().into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_or_several_servers() {
        let one = NatsServers::parse("nats://a:4222").expect("one");
        assert_eq!(one.addrs().len(), 1);
        assert_eq!(one.addrs()[0].host(), "a");

        let several = NatsServers::parse(" nats://a:4222 , b:5222,,tls://c ").expect("several");
        let hosts: Vec<&str> = several.addrs().iter().map(ServerAddr::host).collect();
        assert_eq!(hosts, ["a", "b", "c"]);
        assert_eq!(several.addrs()[1].port(), 5222);
        assert_eq!(several.to_string(), "nats://a:4222,b:5222,tls://c");
    }

    #[test]
    fn refuses_empty_lists_and_names_the_bad_url() {
        for empty in ["", " ", ",", " , "] {
            assert!(matches!(
                NatsServers::parse(empty),
                Err(ServersError::Empty)
            ));
        }
        match NatsServers::parse("nats://a:4222,http://b:80") {
            Err(ServersError::Url { url, .. }) => assert_eq!(url, "http://b:80"),
            other => panic!("expected a URL error, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_through_serde_as_a_string() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Config {
            nats_url: NatsServers,
        }
        let config: Config = toml::from_str("nats_url = \"nats://a:1,nats://b:2\"").expect("parse");
        assert_eq!(config.nats_url.addrs().len(), 2);
        let text = toml::to_string(&config).expect("render");
        assert_eq!(text.trim(), "nats_url = \"nats://a:1,nats://b:2\"");
        let err = toml::from_str::<Config>("nats_url = \"\"").expect_err("empty");
        assert!(err.to_string().contains("no NATS server URL"), "{err}");
    }

    #[test]
    fn the_default_is_the_local_server() {
        let default = NatsServers::default();
        assert_eq!(
            default,
            NatsServers::parse("nats://127.0.0.1:4222").expect("parse")
        );
    }
}
