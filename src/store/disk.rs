//! The store in a folder: PEM certificates, PKCS#8 key files, and a JSON index.
//!
//! ```text
//! store/
//!   index.json                 certificates (file, key container, archived, renewed_by)
//!                              and key containers (file, ACL); the commit point
//!   certs/<THUMBPRINT>.pem     one certificate each: `openssl x509 -in ... -noout -text`
//!   keys/<CONTAINER>.pem       one PKCS#8 key each, mode 0600
//!   .lock                      writers hold it for a read-modify-write
//! ```
//!
//! Certificate and key files are immutable once written (named by thumbprint and container), so
//! a change writes any new files first and then replaces `index.json` atomically (temp file,
//! fsync, rename, fsync of the folder). A reader in another process, such as a running server,
//! sees either the old index or the new one, and every file either index names exists.
//!
//! A change's events (event 1001 for a renewal) commit in the same index, in its outbox, and
//! are appended to the deployment's event log afterwards (see `outbox`), so a kill between the
//! two never loses one.

use std::fs;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use super::outbox::{Outbox, Pending, crash_point};
use super::{Acl, KeyContainer, Store, StoreError, StoredCert};
use crate::atomic::atomic_write;
use crate::eventlog::{Event, EventLog};
use crate::pki::{CertInfo, Thumbprint, to_pem};

const FORMAT: &str = "lcs-sim-store/1";
const INDEX: &str = "index.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    format: String,
    certificates: Vec<CertEntry>,
    key_containers: Vec<ContainerEntry>,
    /// The last number given to an event of the outbox (absent until the first).
    #[serde(default, skip_serializing_if = "is_zero")]
    last_event_seq: u64,
    /// Events committed with a change and not yet known to be in the event log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outbox: Vec<Pending>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Index {
    fn take_outbox(&mut self) -> Outbox {
        Outbox {
            last_seq: self.last_event_seq,
            pending: std::mem::take(&mut self.outbox),
        }
    }

    fn set_outbox(&mut self, outbox: &Outbox) {
        self.last_event_seq = outbox.last_seq;
        self.outbox = outbox.pending.clone();
    }
}

/// A certificate whose key container's file is gone (see [`DiskStore::missing_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingKey {
    /// The key container.
    pub container: String,
    /// Its file, which does not exist.
    pub path: PathBuf,
    /// The certificate's issuer.
    pub issuer: String,
    /// The certificate's serial.
    pub serial: crate::pki::Serial,
    /// The certificate's thumbprint.
    pub thumbprint: Thumbprint,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    thumbprint: Thumbprint,
    file: String,
    key_container: String,
    archived: bool,
    renewed_by: Option<Thumbprint>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerEntry {
    name: String,
    file: String,
    acl: Acl,
}

/// Identifies one version of `index.json`, to notice a change made by another process
/// without re-reading the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    inode: u64,
}

/// A store kept in a folder.
#[derive(Debug, Clone)]
pub struct DiskStore {
    dir: PathBuf,
    log: Option<EventLog>,
}

impl DiskStore {
    /// The store in `dir` (not read until [`DiskStore::load`]).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            log: None,
        }
    }

    /// The same store, delivering its changes' events to `log`. Without a log, events
    /// committed by [`update_logged`](Self::update_logged) wait in the outbox until a store
    /// with one opens the folder.
    pub fn with_event_log(mut self, log: EventLog) -> Self {
        self.log = Some(log);
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The index file, whose replacement commits a change.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX)
    }

    /// Creates the folder and writes `store` into it.
    pub fn create(dir: impl Into<PathBuf>, store: &Store) -> Result<Self, StoreError> {
        let disk = Self::at(dir);
        for sub in ["", "certs", "keys"] {
            let path = disk.dir.join(sub);
            fs::create_dir_all(&path).map_err(StoreError::io(&path))?;
        }
        // Created once here, so a writer that fails later has changed nothing.
        let lock = disk.lock_path();
        fs::File::create(&lock).map_err(StoreError::io(&lock))?;
        disk.save(store)?;
        Ok(disk)
    }

    /// The current version of the index, cheap enough to poll.
    pub fn stamp(&self) -> Result<IndexStamp, StoreError> {
        let path = self.index_path();
        let meta = fs::metadata(&path).map_err(StoreError::io(&path))?;
        Ok(IndexStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
        })
    }

    /// The certificates whose key file is missing, with that file: what a diagnosis can say
    /// when [`load`](Self::load) fails on a missing key (`doctor`). Reads only index.json and
    /// the certificate files; empty when index.json cannot be read (then `load` says why).
    pub fn missing_keys(&self) -> Vec<MissingKey> {
        let Ok(text) = fs::read_to_string(self.index_path()) else {
            return Vec::new();
        };
        let Ok(index) = serde_json::from_str::<Index>(&text) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for c in &index.key_containers {
            let Ok(path) = self.file(&c.file) else {
                continue;
            };
            if path.exists() {
                continue;
            }
            for cert in index
                .certificates
                .iter()
                .filter(|e| e.key_container == c.name)
            {
                let info = self
                    .file(&cert.file)
                    .ok()
                    .and_then(|p| CertificateDer::from_pem_file(p).ok())
                    .and_then(|der| CertInfo::parse(&der).ok());
                if let Some(info) = info {
                    out.push(MissingKey {
                        container: c.name.clone(),
                        path: path.clone(),
                        issuer: info.issuer,
                        serial: info.serial,
                        thumbprint: info.thumbprint,
                    });
                }
            }
        }
        out
    }

    /// Reads and checks the whole store.
    pub fn load(&self) -> Result<Store, StoreError> {
        self.build(self.read_index()?)
    }

    /// The store and its outbox.
    fn load_with_outbox(&self) -> Result<(Store, Outbox), StoreError> {
        let mut index = self.read_index()?;
        let outbox = index.take_outbox();
        Ok((self.build(index)?, outbox))
    }

    /// Reads index.json and checks its format.
    fn read_index(&self) -> Result<Index, StoreError> {
        let index_path = self.index_path();
        let text = match fs::read_to_string(&index_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoStore {
                    path: self.dir.clone(),
                });
            }
            Err(e) => {
                return Err(StoreError::Io {
                    path: index_path,
                    source: e,
                });
            }
        };
        let index: Index = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: index_path.clone(),
            line: Some(e.line()),
            detail: e.to_string(),
            hint: "restore index.json from a backup or re-create the deployment with `lcs-sim init --force`".into(),
        })?;
        if index.format != FORMAT {
            return Err(self.corrupt(
                format!("field `format` is `{}`, expected `{FORMAT}`", index.format),
                "this store was written by another version of lcs-sim",
            ));
        }
        Ok(index)
    }

    /// Reads the files `index` names and checks that they fit together.
    fn build(&self, index: Index) -> Result<Store, StoreError> {
        let mut keys = Vec::new();
        for entry in index.key_containers {
            let path = self.file(&entry.file)?;
            let key =
                PrivatePkcs8KeyDer::from_pem_file(&path).map_err(|e| StoreError::Corrupt {
                    path: path.clone(),
                    line: None,
                    detail: format!(
                        "key container `{}`: not a PKCS#8 PEM private key ({e})",
                        entry.name
                    ),
                    hint: "restore the key file; without it the certificate cannot be used".into(),
                })?;
            keys.push(KeyContainer {
                name: entry.name,
                key,
                acl: entry.acl,
            });
        }
        let mut certs = Vec::new();
        for entry in index.certificates {
            let path = self.file(&entry.file)?;
            let der = CertificateDer::from_pem_file(&path).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                line: None,
                detail: format!("not a PEM certificate ({e})"),
                hint: "restore the certificate file, or remove its entry from index.json".into(),
            })?;
            let info = CertInfo::parse(&der).map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                line: None,
                detail: e.to_string(),
                hint: "restore the certificate file, or remove its entry from index.json".into(),
            })?;
            if info.thumbprint != entry.thumbprint {
                return Err(StoreError::Corrupt {
                    path,
                    line: None,
                    detail: format!(
                        "the certificate's thumbprint is {}, but index.json says {}",
                        info.thumbprint, entry.thumbprint
                    ),
                    hint: "the file was replaced or edited by hand; restore it".into(),
                });
            }
            if let Some(key) = keys.iter().find(|k| k.name == entry.key_container)
                && !info.matches_key(&key.key)
            {
                {
                    return Err(StoreError::KeyMismatch {
                        thumbprint: info.thumbprint,
                        container: key.name.clone(),
                    });
                }
            }
            certs.push(StoredCert {
                info,
                der,
                key_container: entry.key_container,
                archived: entry.archived,
                renewed_by: entry.renewed_by,
            });
        }
        Store::from_parts(certs, keys).map_err(|detail| {
            self.corrupt(
                detail,
                "index.json was edited by hand; restore it from a backup",
            )
        })
    }

    /// Writes `store`: new certificate and key files first, then the index atomically. Events
    /// waiting in the outbox stay there.
    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        let outbox = match self.read_index() {
            Ok(mut index) => index.take_outbox(),
            Err(_) => Outbox::default(),
        };
        self.commit(store, &outbox)
    }

    /// Writes any new certificate and key files, then commits `store` and `outbox` in one
    /// replacement of index.json.
    fn commit(&self, store: &Store, outbox: &Outbox) -> Result<(), StoreError> {
        let mut index = Index {
            format: FORMAT.into(),
            certificates: Vec::new(),
            key_containers: Vec::new(),
            last_event_seq: 0,
            outbox: Vec::new(),
        };
        index.set_outbox(outbox);
        for key in store.containers() {
            let file = format!("keys/{}.pem", key.name);
            let path = self.dir.join(&file);
            if !path.exists() {
                let pem = to_pem("PRIVATE KEY", key.key.secret_pkcs8_der());
                atomic_write(&path, pem.as_bytes(), Some(0o600)).map_err(StoreError::io(&path))?;
            }
            index.key_containers.push(ContainerEntry {
                name: key.name.clone(),
                file,
                acl: key.acl.clone(),
            });
        }
        for cert in store.list(true) {
            let file = format!("certs/{}.pem", cert.info.thumbprint);
            let path = self.dir.join(&file);
            if !path.exists() {
                atomic_write(&path, to_pem("CERTIFICATE", &cert.der).as_bytes(), None)
                    .map_err(StoreError::io(&path))?;
            }
            index.certificates.push(CertEntry {
                thumbprint: cert.info.thumbprint.clone(),
                file,
                key_container: cert.key_container.clone(),
                archived: cert.archived,
                renewed_by: cert.renewed_by.clone(),
            });
        }
        crash_point("before-commit");
        self.write_index(&index)
    }

    fn write_index(&self, index: &Index) -> Result<(), StoreError> {
        let mut json = serde_json::to_string_pretty(index).expect("the index serialises");
        json.push('\n');
        let index_path = self.index_path();
        atomic_write(&index_path, json.as_bytes(), None).map_err(StoreError::io(&index_path))
    }

    /// A read-modify-write under the store's lock, so two writers (say, `store renew` and a
    /// live rebind) never lose each other's change. Nothing is written if `change` fails.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.update_logged(|store| Ok((change(store)?, Vec::new())))
    }

    /// [`update`](Self::update) for a change with events: they commit in the same index as the
    /// change and are then appended to the event log (see `outbox`). Events an earlier writer
    /// left undelivered are delivered first. A failure to append after the commit is not the
    /// change's failure: the events wait in the outbox for the next open.
    pub fn update_logged<T>(
        &self,
        change: impl FnOnce(&mut Store) -> Result<(T, Vec<Event>), StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        let (mut store, mut outbox) = self.load_with_outbox()?;
        self.try_deliver(&mut outbox);
        let (out, events) = change(&mut store)?;
        outbox.push(events);
        self.commit(&store, &outbox)?;
        if !outbox.pending.is_empty() {
            crash_point("after-commit");
            if self.try_deliver(&mut outbox) {
                crash_point("after-delivery");
                // Committed already; should emptying the outbox fail, the next open finds the
                // events in the log and does not append them again.
                let _ = self.commit(&store, &outbox);
            }
        }
        Ok(out)
    }

    /// Appends the events a killed writer left in the outbox to the event log, and empties it;
    /// returns how many the log lacked. Cheap when there are none (index.json is read without
    /// the lock). Readers of the log (`lcs-sim events`, `doctor`) call it first.
    pub fn deliver_events(&self) -> Result<usize, StoreError> {
        let Some(log) = &self.log else {
            return Ok(0);
        };
        if self.read_index()?.outbox.is_empty() {
            return Ok(0);
        }
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut outbox = index.take_outbox();
        let appended = outbox.deliver(log)?;
        index.set_outbox(&outbox);
        self.write_index(&index)?;
        Ok(appended)
    }

    /// Delivers `outbox` if there is a log; whether it is empty now. A log that cannot be
    /// written leaves the events in the outbox.
    fn try_deliver(&self, outbox: &mut Outbox) -> bool {
        match &self.log {
            Some(log) => outbox.deliver(log).is_ok(),
            None => outbox.pending.is_empty(),
        }
    }

    /// Runs `f` under the store's lock without reading or writing the store: for a write beside
    /// it (lcs.toml's references) that must not race a `fix` or a `store renew`.
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        Ok(f())
    }

    /// Takes the store's lock (released when the file is dropped).
    fn lock(&self) -> Result<fs::File, StoreError> {
        let lock_path = self.lock_path();
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StoreError::io(&lock_path))?;
        lock.lock().map_err(StoreError::io(&lock_path))?;
        Ok(lock)
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(".lock")
    }

    fn file(&self, relative: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(relative);
        let plain = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(self.corrupt(
                format!("file name `{relative}` leaves the store folder"),
                "index.json was edited by hand; restore it from a backup",
            ));
        }
        Ok(self.dir.join(rel))
    }

    fn corrupt(&self, detail: String, hint: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.index_path(),
            line: None,
            detail,
            hint: hint.into(),
        }
    }
}
