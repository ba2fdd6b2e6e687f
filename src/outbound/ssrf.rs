//! The server-side request forgery guard: which destinations Hookline refuses to reach, and a DNS
//! resolver that hands the HTTP client only addresses that passed the check.
//!
//! Checked when an endpoint URL is saved and again on every attempt. IP literals never reach a
//! resolver, so they are checked from the URL; names are checked by name, then every resolved
//! address is checked and only permitted ones are used, leaving no window for DNS rebinding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

/// A destination the guard refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destination {target} is not allowed: {reason}")]
pub struct Blocked {
    pub target: String,
    pub reason: String,
}

/// A name that did not resolve. Treated as a failure, never as permission.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {reason}")]
pub struct DnsFailure {
    pub host: String,
    pub reason: String,
}

/// Why an IPv4 address is forbidden, if it is.
fn ipv4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (10, _, _) => "private network (10.0.0.0/8)",
        (172, 16..=31, _) => "private network (172.16.0.0/12)",
        (192, 168, _) => "private network (192.168.0.0/16)",
        (169, 254, _) => "link-local, incl. cloud metadata (169.254.0.0/16)",
        (100, 64..=127, _) => "shared address space / CGNAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation range",
        (198, 18..=19, _) => "benchmarking range (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

/// Why an IPv6 address is forbidden, if it is; embedded IPv4 addresses are judged as IPv4.
fn ipv6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return ipv4_reason(v4).or(None);
    }
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    match segments {
        // IPv4-compatible ::a.b.c.d (deprecated): judge the IPv4 address, and refuse the form.
        [0, 0, 0, 0, 0, 0, hi, lo] => {
            Some(ipv4_reason(embedded_v4(hi, lo)).unwrap_or("IPv4-compatible IPv6 (::/96)"))
        }
        // NAT64 well-known prefix: the router forwards to the embedded IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => ipv4_reason(embedded_v4(hi, lo)),
        [0x64, 0xff9b, 1, ..] => Some("local-use NAT64 (64:ff9b:1::/48)"),
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT).
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => {
            Some(ipv4_reason(embedded_v4(hi, lo)).unwrap_or("IPv4-translated IPv6 (::ffff:0:0/96)"))
        }
        // 6to4: the IPv4 address sits in bits 16..48.
        [0x2002, hi, lo, ..] => ipv4_reason(embedded_v4(hi, lo)),
        [0x2001, 0, ..] => Some("Teredo tunnelling (2001::/32)"),
        [0x2001, 0xdb8, ..] => Some("documentation (2001:db8::/32)"),
        [0x100, 0, 0, 0, ..] => Some("discard-only (100::/64)"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("unique local (fc00::/7)"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("multicast (ff00::/8)"),
        _ => None,
    }
}

/// Why an address is forbidden by default, if it is.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_reason(v4),
        IpAddr::V6(v6) => ipv6_reason(v6),
    }
}

/// Why a host name is forbidden by name alone, if it is.
fn forbidden_name_reason(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        Some("localhost names")
    } else if host.ends_with(".local") || host == "local" {
        Some("multicast DNS (.local) names")
    } else {
        None
    }
}

/// The guard's rules with the operator's allow-list applied.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed_nets: Vec<IpNet>,
    allowed_hosts: Vec<String>,
}

impl Policy {
    /// A policy from allow-list entries: CIDRs (`127.0.0.0/8`), single addresses, or host names.
    pub fn new(allow: &[String]) -> Result<Policy, String> {
        let mut policy = Policy::default();
        for entry in allow {
            let entry = entry.trim();
            if let Ok(net) = entry.parse::<IpNet>() {
                policy.allowed_nets.push(net.trunc());
            } else if let Ok(ip) = entry.parse::<IpAddr>() {
                policy.allowed_nets.push(IpNet::from(ip));
            } else if !entry.is_empty()
                && entry.len() <= 253
                && entry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            {
                policy
                    .allowed_hosts
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "`{entry}` is neither a CIDR, an IP address nor a host name"
                ));
            }
        }
        Ok(policy)
    }

    fn host_allowlisted(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.contains(&host)
    }

    /// Checks one address (IPv4-mapped IPv6 is judged as the IPv4 it carries).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        let canonical = ip.to_canonical();
        if self
            .allowed_nets
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
        {
            return Ok(());
        }
        match forbidden_reason(canonical).or_else(|| forbidden_reason(ip)) {
            Some(reason) => Err(Blocked {
                target: ip.to_string(),
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Checks a URL's host without resolving it: literals fully, names by name.
    pub fn check_url_host(&self, url: &Url) -> Result<(), Blocked> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => self.check_name(name),
            None => Err(Blocked {
                target: url.as_str().to_owned(),
                reason: "the URL has no host".to_owned(),
            }),
        }
    }

    /// Checks a host name by name alone.
    pub fn check_name(&self, host: &str) -> Result<(), Blocked> {
        if self.host_allowlisted(host) {
            return Ok(());
        }
        match forbidden_name_reason(host) {
            Some(reason) => Err(Blocked {
                target: host.to_owned(),
                reason: reason.to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Resolves `host` and keeps only permitted addresses; none permitted is `Blocked`, a lookup
    /// failure is `DnsFailure`.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        self.check_name(host)?;
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| DnsFailure {
                host: host.to_owned(),
                reason: error.to_string(),
            })?
            .collect();
        if resolved.is_empty() {
            return Err(Box::new(DnsFailure {
                host: host.to_owned(),
                reason: "no addresses".to_owned(),
            }));
        }
        self.screen(host, resolved, Screening::PermittedOnly)
            .map_err(|blocked| Box::new(blocked) as Box<dyn std::error::Error + Send + Sync>)
    }

    /// Checks a URL as at save time: the host by name or literal, then, for names, every address
    /// it resolves to.
    /// Checks a URL as it is saved: its host, and every address its name resolves to. One
    /// forbidden address refuses it (a name that also points at loopback is not a public name),
    /// while an attempt later connects only to the addresses that pass.
    pub async fn check_url(&self, url: &Url) -> Result<(), String> {
        self.check_url_host(url)
            .map_err(|blocked| blocked.to_string())?;
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            self.check_name(name)
                .map_err(|blocked| blocked.to_string())?;
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| {
                    DnsFailure {
                        host: name.to_owned(),
                        reason: error.to_string(),
                    }
                    .to_string()
                })?
                .collect();
            self.screen(name, resolved, Screening::AllMustPass)
                .map_err(|blocked| blocked.to_string())?;
        }
        Ok(())
    }

    /// Screens the addresses `host` resolved to: with [`Screening::AllMustPass`] one forbidden
    /// address refuses them all; with [`Screening::PermittedOnly`] the permitted ones are kept.
    /// An allow-listed host passes as it is.
    fn screen(
        &self,
        host: &str,
        resolved: Vec<SocketAddr>,
        screening: Screening,
    ) -> Result<Vec<SocketAddr>, Blocked> {
        if resolved.is_empty() {
            return Err(Blocked {
                target: host.to_owned(),
                reason: "the name resolves to no address".to_owned(),
            });
        }
        if self.host_allowlisted(host) {
            return Ok(resolved);
        }
        let mut first_refusal = None;
        let permitted: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match self.check_ip(addr.ip()) {
                Ok(()) => true,
                Err(blocked) => {
                    first_refusal.get_or_insert(blocked);
                    false
                }
            })
            .collect();
        match first_refusal {
            Some(blocked) if permitted.is_empty() || screening == Screening::AllMustPass => {
                Err(Blocked {
                    target: format!("{host} ({})", blocked.target),
                    reason: blocked.reason,
                })
            }
            _ => Ok(permitted),
        }
    }
}

/// How strictly [`Policy::screen`] treats a name with several addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Screening {
    /// Saving a URL: every address must pass.
    AllMustPass,
    /// Connecting: only the addresses that pass are used.
    PermittedOnly,
}

/// The HTTP client's resolver: every connection goes to an address this guard checked.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<Policy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_policy() -> Policy {
        Policy::new(&[]).unwrap()
    }

    fn url_verdict(policy: &Policy, url: &str) -> Result<(), Blocked> {
        policy.check_url_host(&Url::parse(url).expect("test URL parses"))
    }

    /// Addresses as data only: nothing here is ever connected to.
    #[test]
    fn a_name_with_one_forbidden_address_is_refused_at_save_but_screened_at_connect() {
        let policy = default_policy();
        let public: SocketAddr = "93.184.216.34:443".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let both = vec![public, loopback];
        let saved = policy.screen("mixed.example", both.clone(), Screening::AllMustPass);
        assert!(saved.is_err(), "saving refuses the name");
        let connect = policy
            .screen("mixed.example", both, Screening::PermittedOnly)
            .unwrap();
        assert_eq!(
            connect,
            vec![public],
            "connecting uses only the public address"
        );
        assert!(
            policy
                .screen("local.example", vec![loopback], Screening::PermittedOnly)
                .is_err()
        );
        assert!(
            policy
                .screen("empty.example", Vec::new(), Screening::PermittedOnly)
                .is_err()
        );
    }

    /// Addresses as data only: nothing here is ever connected to.
    #[test]
    fn classifier_table() {
        let forbidden = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.1.1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:8.8.8.8",
            "::127.0.0.1",
            "::10.0.0.1",
            "::8.8.8.8",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:a9fe:a9fe::",
            "2001::1",
            "2001:db8::1",
            "100::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.1",
            "169.253.0.1",
            "11.0.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ];
        let policy = default_policy();
        for address in forbidden {
            let ip: IpAddr = address.parse().unwrap();
            assert!(
                policy.check_ip(ip).is_err(),
                "{address} should be forbidden"
            );
        }
        for address in allowed {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(policy.check_ip(ip), Ok(()), "{address} should be allowed");
        }
        assert!(forbidden.len() + allowed.len() >= 60);
    }

    #[test]
    fn numeric_tricks_are_normalised_before_the_check() {
        let policy = default_policy();
        for url in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://017700000001/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://[::]/",
            "https://0/",
        ] {
            assert!(
                url_verdict(&policy, url).is_err(),
                "{url} should be forbidden"
            );
        }
        assert_eq!(
            url_verdict(&policy, "https://134744072/"),
            Ok(()),
            "8.8.8.8 as a number"
        );
    }

    #[test]
    fn local_names_are_forbidden_by_name() {
        let policy = default_policy();
        for url in [
            "http://localhost/",
            "http://LOCALHOST:8080/",
            "http://localhost./",
            "http://api.localhost/",
            "http://printer.local/",
            "http://Printer.Local./",
        ] {
            assert!(
                url_verdict(&policy, url).is_err(),
                "{url} should be forbidden"
            );
        }
        assert_eq!(url_verdict(&policy, "https://hooks.example.com/x"), Ok(()));
        assert_eq!(
            url_verdict(&policy, "https://localhost.example.com/"),
            Ok(())
        );
    }

    #[test]
    fn the_allow_list_lifts_the_guard_for_its_entries_only() {
        let policy = Policy::new(&[
            "127.0.0.0/8".to_owned(),
            "10.1.2.3".to_owned(),
            "hooks.internal".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        assert_eq!(policy.check_ip("127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check_ip("::ffff:127.0.0.1".parse().unwrap()), Ok(()));
        assert_eq!(policy.check_ip("10.1.2.3".parse().unwrap()), Ok(()));
        assert!(policy.check_ip("10.1.2.4".parse().unwrap()).is_err());
        assert!(policy.check_ip("::1".parse().unwrap()).is_err());
        assert_eq!(policy.check_name("hooks.internal"), Ok(()));
        assert_eq!(policy.check_name("localhost"), Ok(()));
        assert!(policy.check_name("api.localhost").is_err());
        assert!(Policy::new(&["not a host!".to_owned()]).is_err());
        assert!(Policy::new(&["10.0.0.0/33".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn resolution_keeps_only_permitted_addresses() {
        let strict = default_policy();
        let error = strict.resolve("localhost", 80).await.unwrap_err();
        assert!(error.downcast_ref::<Blocked>().is_some(), "{error}");

        // "localhost" is resolved from the hosts file; only loopback is involved.
        let loopback_v4 = Policy::new(&["127.0.0.0/8".to_owned()]).unwrap();
        let error = loopback_v4.resolve("localhost", 80).await.unwrap_err();
        assert!(
            error.downcast_ref::<Blocked>().is_some(),
            "blocked by name first: {error}"
        );

        let by_name = Policy::new(&["localhost".to_owned()]).unwrap();
        let addrs = by_name.resolve("localhost", 80).await.unwrap();
        assert!(
            addrs.iter().all(|addr| addr.ip().is_loopback()),
            "{addrs:?}"
        );
    }
}
