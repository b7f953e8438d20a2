//! How certificates are shown: one serialisable view for JSON, and the text rendering.

use lcs_sim::certcheck::{self, Problem};
use lcs_sim::config::Config;
use lcs_sim::store::{Ace, Store, StoredCert};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For programs: stable field names.
    Json,
}

/// Where a certificate stands: archived, or (if not) whether it is within its validity now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In the store, found by a lookup, and within its validity.
    Active,
    /// Renewed: invisible to the issuer + serial lookup a service does at start.
    Archived,
    /// Past its notAfter: peers refuse it.
    Expired,
    /// Before its notBefore: peers refuse it.
    NotYetValid,
}

/// Whether a certificate is within its validity now, archived or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// notBefore <= now <= notAfter.
    Valid,
    /// Past its notAfter.
    Expired,
    /// Before its notBefore.
    NotYetValid,
}

/// A certificate as `store list --format json` shows it.
#[derive(Debug, Serialize)]
pub struct CertView<'a> {
    pub thumbprint: &'a str,
    pub serial: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    pub dns_names: &'a [String],
    pub ip_addresses: Vec<String>,
    pub ekus: &'a [String],
    pub not_before: String,
    pub not_after: String,
    pub archived: bool,
    /// `active`, `archived`, `expired` or `not_yet_valid` (archived wins over the dates).
    pub status: Status,
    /// `valid`, `expired` or `not_yet_valid` at the time of the command.
    pub validity: Validity,
    pub renewed_by: Option<&'a str>,
    /// The certificate this one renewed, if any.
    pub renews: Option<&'a str>,
    pub key_container: &'a str,
    /// The ACL of the certificate's private key.
    pub acl: &'a [Ace],
    /// Connections and routes in lcs.toml whose issuer + serial name this certificate.
    pub used_by: Vec<String>,
}

impl<'a> CertView<'a> {
    pub fn new(
        cert: &'a StoredCert,
        store: &'a Store,
        config: Option<&Config>,
        now: OffsetDateTime,
    ) -> Self {
        let info = &cert.info;
        let validity = match certcheck::validity(cert, now) {
            None => Validity::Valid,
            Some(Problem::NotYetValid { .. }) => Validity::NotYetValid,
            Some(_) => Validity::Expired,
        };
        let status = match (cert.archived, validity) {
            (true, _) => Status::Archived,
            (false, Validity::Valid) => Status::Active,
            (false, Validity::Expired) => Status::Expired,
            (false, Validity::NotYetValid) => Status::NotYetValid,
        };
        let rfc = |t: time::OffsetDateTime| t.format(&Rfc3339).expect("RFC 3339 formats any date");
        let used_by = config
            .map(|c| {
                c.cert_refs()
                    .filter(|(_, r)| r.serial == info.serial && r.issuer == info.issuer)
                    .map(|(id, _)| id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        CertView {
            thumbprint: info.thumbprint.as_str(),
            serial: info.serial.as_str(),
            issuer: &info.issuer,
            subject: &info.subject,
            dns_names: &info.dns_names,
            ip_addresses: info.ip_addresses.iter().map(ToString::to_string).collect(),
            ekus: &info.ekus,
            not_before: rfc(info.not_before),
            not_after: rfc(info.not_after),
            archived: cert.archived,
            status,
            validity,
            renewed_by: cert.renewed_by.as_ref().map(|t| t.as_str()),
            renews: store
                .list(true)
                .find(|c| c.renewed_by.as_ref() == Some(&info.thumbprint))
                .map(|c| c.info.thumbprint.as_str()),
            key_container: &cert.key_container,
            acl: store
                .key_acl(&info.thumbprint)
                .expect("a listed certificate has a key container")
                .entries(),
            used_by,
        }
    }

    /// The text block `store list` and `store show` print.
    pub fn to_text(&self, detailed: bool) -> String {
        let mut out = String::new();
        let state = match (self.archived, self.validity) {
            (false, Validity::Valid) => "active",
            (false, Validity::Expired) => "EXPIRED",
            (false, Validity::NotYetValid) => "NOT YET VALID",
            (true, Validity::Valid) => "ARCHIVED",
            (true, Validity::Expired) => "ARCHIVED, EXPIRED",
            (true, Validity::NotYetValid) => "ARCHIVED, NOT YET VALID",
        };
        out.push_str(&format!(
            "{}  {}  [{state}]\n",
            self.thumbprint, self.subject
        ));
        out.push_str(&format!("    serial      {}\n", self.serial));
        out.push_str(&format!("    issuer      {}\n", self.issuer));
        out.push_str(&format!(
            "    valid       {} .. {}\n",
            self.not_before, self.not_after
        ));
        if detailed {
            let mut names = self.dns_names.to_vec();
            names.extend(self.ip_addresses.iter().cloned());
            out.push_str(&format!("    names       {}\n", names.join(", ")));
            out.push_str(&format!("    ekus        {}\n", self.ekus.join(", ")));
            out.push_str(&format!("    key         {}\n", self.key_container));
        }
        let acl: Vec<String> = self
            .acl
            .iter()
            .map(|a| {
                let rights: Vec<String> = a.rights.iter().map(ToString::to_string).collect();
                format!("{} {}", a.principal, rights.join("+"))
            })
            .collect();
        out.push_str(&format!("    key acl     {}\n", acl.join("; ")));
        if let Some(next) = self.renewed_by {
            out.push_str(&format!("    renewed by  {next}\n"));
        }
        if let Some(prev) = self.renews {
            out.push_str(&format!("    renews      {prev}\n"));
        }
        if !self.used_by.is_empty() {
            out.push_str(&format!("    used by     {}\n", self.used_by.join(", ")));
        }
        out
    }
}
