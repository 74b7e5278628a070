//! Identities asserted by a trusted reverse proxy (an authenticating proxy in front of the server
//! that puts the user name in a header such as `X-Forwarded-User`): the header is believed only
//! from peers inside configured networks, and the role comes from a name → role map or a default.
//! Also the small CIDR parser and matcher (IPv4 and IPv6) the trusted networks are written in, and
//! the client address behind trusted proxies (`X-Forwarded-For`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::Role;
use super::users::{MAX_NAME_LEN, User, is_valid_name};

/// A network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7/32`).
///
/// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as IPv4 (`10.0.0.0/8`), and
/// IPv4-mapped peers match IPv4 networks, since dual-stack sockets report IPv4 peers that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a network was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error(
        "invalid network {0:?}: expected an address or ADDRESS/PREFIX, e.g. 10.0.0.0/8, \
         192.0.2.7 or fd00::/8"
    )]
    Syntax(String),
    #[error("invalid prefix length in {text:?}: at most {max} for this address family")]
    Prefix { text: String, max: u8 },
    #[error("{text:?} has bits set after the prefix; the network is {network}")]
    HostBits { text: String, network: String },
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// The network of `address` with `prefix` bits; `None` when the prefix is too long for the
    /// address family. Bits after the prefix are cleared.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        match address {
            IpAddr::V4(v4) if prefix <= 32 => Some(Self {
                network: Ipv4Addr::from(u32::from(v4) & mask_v4(prefix)).into(),
                prefix,
            }),
            IpAddr::V6(v6) if prefix <= 128 => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Self::new(v4.into(), prefix - 96),
                _ => Some(Self {
                    network: Ipv6Addr::from(u128::from(v6) & mask_v6(prefix)).into(),
                    prefix,
                }),
            },
            _ => None,
        }
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }

    /// Parses a list separated by commas and/or whitespace (`"10.0.0.0/8, fd00::/8"`); an empty
    /// text is an empty list.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, CidrError> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDRESS/PREFIX`, or a bare address (a single host). Bits set after the prefix are refused
    /// (`10.0.0.1/8` is probably a mistake for `10.0.0.0/8` or `10.0.0.1/32`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| syntax())?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| syntax())?
            }
            Some(_) => return Err(syntax()),
        };
        let cidr = Self::new(address, prefix).ok_or_else(|| CidrError::Prefix {
            text: text.to_owned(),
            max,
        })?;
        let host = Self::new(address, max).map(|c| c.network);
        if host != Some(cidr.network) {
            return Err(CidrError::HostBits {
                text: text.to_owned(),
                network: cidr.to_string(),
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Where user names may come from a proxy header, and which role they get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The request header with the user name, e.g. `X-Forwarded-User`.
    pub header: String,
    /// Peers whose header is believed (the proxy's addresses as this server sees them).
    pub trusted: Vec<Cidr>,
    /// The role of names missing from `roles`; `None` refuses them.
    pub default_role: Option<Role>,
    /// Roles by user name (e.g. [`super::Users::roles`] of the users file).
    pub roles: BTreeMap<String, Role>,
}

/// Why a proxy header gave no identity. The caller logs it (an untrusted header is a spoofing
/// attempt or a missing trusted network) and treats the request as unauthenticated, or answers
/// 403 for [`ProxyError::NoRole`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error(
        "ignored the {header} header from {peer}: that peer is not a trusted proxy (a spoofing \
         attempt, or the proxy's address is missing from the trusted networks)"
    )]
    UntrustedPeer { peer: IpAddr, header: String },
    #[error(
        "the trusted proxy {peer} sent an invalid user name in {header}: {name}; a name is 1 to \
         {MAX_NAME_LEN} of letters, digits, `.`, `_`, `@` and `-`"
    )]
    InvalidName {
        peer: IpAddr,
        header: String,
        /// The value, quoted and shortened.
        name: String,
    },
    #[error(
        "user {user:?} (named by the trusted proxy) has no role here and there is no default role"
    )]
    NoRole { user: String },
}

impl ProxyConfig {
    /// Trusts `header` from `trusted` peers, with no default role and no role map.
    pub fn new(header: impl Into<String>, trusted: Vec<Cidr>) -> Self {
        Self {
            header: header.into(),
            trusted,
            default_role: None,
            roles: BTreeMap::new(),
        }
    }

    /// Whether `peer` is inside a trusted network.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(peer))
    }

    /// The user the proxy names for a request from `peer` whose [`ProxyConfig::header`] has
    /// `header_value` (`None` when absent: no identity, `Ok(None)`).
    ///
    /// Spaces and tabs around the value are dropped and it is lowercased (ASCII), then validated
    /// like a users-file name. Pass the
    /// value only when the header occurs once; a repeated header should be refused by the caller.
    pub fn identify(
        &self,
        peer: IpAddr,
        header_value: Option<&str>,
    ) -> Result<Option<User>, ProxyError> {
        let Some(value) = header_value else {
            return Ok(None);
        };
        if !self.is_trusted(peer) {
            return Err(ProxyError::UntrustedPeer {
                peer,
                header: self.header.clone(),
            });
        }
        let name = value.trim_matches([' ', '\t']).to_ascii_lowercase();
        if !is_valid_name(&name) {
            let shortened: String = value.chars().take(MAX_NAME_LEN).collect();
            return Err(ProxyError::InvalidName {
                peer,
                header: self.header.clone(),
                name: format!("{shortened:?}"),
            });
        }
        let role = self
            .roles
            .get(&name)
            .copied()
            .or(self.default_role)
            .ok_or_else(|| ProxyError::NoRole { user: name.clone() })?;
        Ok(Some(User { name, role }))
    }
}

/// The address of the client behind trusted proxies: when `peer` (the TCP peer) is inside
/// `trusted`, the right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries are
/// appended by each proxy, so only those right of the first untrusted one can be believed). `peer`
/// when it is not trusted, when there is no header, or when an entry does not parse (everything
/// left of it could be forged). `forwarded_for` holds every `X-Forwarded-For` header value in order.
pub fn forwarded_client(peer: IpAddr, forwarded_for: &[&str], trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .rev()
    {
        let parsed = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()));
        let Some(ip) = parsed else {
            return client;
        };
        client = ip;
        if !is_trusted(ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests;
