//! Where Lethe may send requests of its own (webhook deliveries): only to public addresses,
//! unless `webhooks.allow_private_networks` is set. Otherwise anybody who can register a
//! webhook could make Lethe call loopback services, the cloud metadata endpoint
//! (169.254.169.254) or the private network it runs in (server-side request forgery,
//! OWASP SSRF Prevention Cheat Sheet).
//!
//! A URL is checked when it is registered, and again at each delivery by the resolver the
//! HTTP client connects through ([`PublicOnlyResolver`]): a name that resolved to a public
//! address at registration and to a private one later (DNS rebinding) is refused then.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `ip` is an address of the public Internet: not unspecified, loopback, private
/// (RFC 1918), shared (RFC 6598), link-local (cloud metadata), unique-local (RFC 4193),
/// multicast, broadcast, documentation or reserved. IPv4-mapped IPv6 addresses are judged as
/// the IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking, RFC 2544
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, RFC 4193
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (embeds IPv4)
}

/// Why an outgoing URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Checks that every address `url`'s host stands for is public (resolving a name), unless
/// `allow_private` is set.
///
/// # Errors
/// [`Refused`] naming the reason: a private address, a name that does not resolve, a URL
/// without a host.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), Refused> {
    check_url_as(url, allow_private, "webhooks.allow_private_networks").await
}

/// [`check_url`] for a URL configured elsewhere: a refusal names `setting` as the one that
/// allows private addresses (e.g. `iceberg.allow_private_networks` for a catalog).
///
/// # Errors
/// As [`check_url`].
pub async fn check_url_as(url: &str, allow_private: bool, setting: &str) -> Result<(), Refused> {
    if allow_private {
        return Ok(());
    }
    let parsed = url::Url::parse(url).map_err(|e| Refused(format!("not a URL: {e}")))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses: Vec<SocketAddr> = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| Refused(format!("the host {name} does not resolve")))?
            .collect(),
        None => return Err(Refused("the URL names no host".into())),
    };
    check_addresses(&addresses, setting)
}

fn check_addresses(addresses: &[SocketAddr], setting: &str) -> Result<(), Refused> {
    if addresses.is_empty() {
        return Err(Refused("the host resolves to no address".into()));
    }
    match addresses.iter().find(|a| !is_public(a.ip())) {
        Some(private) => Err(Refused(format!(
            "the host resolves to {}, a loopback, private, link-local or otherwise non-public address; set {setting} to allow it",
            private.ip()
        ))),
        None => Ok(()),
    }
}

/// A DNS resolver for the HTTP client that refuses names resolving to any non-public address
/// (the check at connection time, so DNS rebinding after registration gets nowhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_addresses(&addresses, "webhooks.allow_private_networks")?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_to_private_hosts_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/hook",
            "http://localhost:9000/hook",
        ] {
            let e = check_url(url, false).await.unwrap_err();
            assert!(
                e.0.contains("allow_private_networks") || e.0.contains("resolve"),
                "{e}"
            );
            check_url(url, true).await.unwrap();
        }
        check_url("http://93.184.216.34/hook", false).await.unwrap();
    }
}
