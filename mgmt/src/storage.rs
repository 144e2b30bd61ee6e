//! Directory storage pools, as libvirt's `dir` backend keeps them: a pool is a host directory,
//! its volumes the regular files in it. This is what virt-install and virsh's `vol-*` and
//! `pool-*` commands need to name a disk by path; the VMM itself opens disks by path and
//! never asks the pools.
//!
//! Pools live as long as the process (libvirtd would keep the persistent ones in
//! /etc/libvirt/storage). Volumes are read from the directory at each call, so there is no
//! cache to go stale and nothing to refresh.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use roxmltree::{Document, Node};

use crate::remote::domain::{format_uuid, parse_uuid, random_uuid};
use crate::xml::XmlWriter;

/// The most pools one process keeps: a client cannot grow the list without bound.
pub const MAX_POOLS: usize = 64;
/// The most volumes a pool lists (REMOTE_STORAGE_VOL_LIST_MAX).
pub const MAX_VOLUMES: usize = 16384;
/// The largest pool document read (libvirt's pools are a few hundred bytes).
pub const POOL_XML_MAX: usize = 64 * 1024;

/// virStoragePoolState.
pub const POOL_INACTIVE: u32 = 0;
pub const POOL_RUNNING: u32 = 2;
/// virStorageVolType of a regular file.
pub const VOLUME_FILE: i32 = 0;

/// One pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub uuid: [u8; 16],
    pub path: PathBuf,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

/// One volume: a file in an active pool's directory. Its key is its path, as in libvirt's
/// dir backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub pool: String,
    pub name: String,
    pub path: PathBuf,
}

/// What a volume's stat says: its size and what it takes on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeSize {
    pub capacity: u64,
    pub allocation: u64,
}

/// What a pool's file system says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSpace {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

/// Why a storage call failed; the REMOTE program maps each onto libvirt's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    NoPool(String),
    NoVolume(String),
    /// The pool document cannot be read, or names what a dir pool does not have.
    Xml(String),
    Unsupported(String),
    /// Not valid in the pool's state (start an active pool, undefine a running one).
    Invalid(String),
    /// The host refused (a missing directory, a failed stat).
    Failed(String),
}

#[derive(Default)]
pub struct StoragePools {
    pools: Mutex<Vec<Pool>>,
}

impl StoragePools {
    pub fn new() -> StoragePools {
        StoragePools::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Vec<Pool>) -> R) -> R {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut pools)
    }

    pub fn list(&self) -> Vec<Pool> {
        self.with(|pools| pools.clone())
    }

    pub fn by_name(&self, name: &str) -> Result<Pool, StorageError> {
        self.find(|p| p.name == name)
            .ok_or_else(|| no_pool(format!("no storage pool with matching name '{name}'")))
    }

    pub fn by_uuid(&self, uuid: &[u8; 16]) -> Result<Pool, StorageError> {
        self.find(|p| p.uuid == *uuid).ok_or_else(|| {
            no_pool(format!(
                "no storage pool with matching uuid '{}'",
                format_uuid(uuid)
            ))
        })
    }

    pub fn by_target_path(&self, path: &str) -> Result<Pool, StorageError> {
        let path = Path::new(path);
        self.find(|p| p.path == path).ok_or_else(|| {
            no_pool(format!(
                "no storage pool with matching target path '{}'",
                path.display()
            ))
        })
    }

    fn find(&self, wanted: impl Fn(&Pool) -> bool) -> Option<Pool> {
        self.with(|pools| pools.iter().find(|p| wanted(p)).cloned())
    }

    /// `pool-define`: a persistent, inactive pool from its XML. Defining a pool's name again
    /// replaces its definition (libvirt's update), if the UUID, when given, matches.
    pub fn define(&self, xml: &str) -> Result<Pool, StorageError> {
        self.add(read_pool_xml(xml)?, true)
    }

    /// `pool-create`: a transient pool, active at once; gone when stopped. `build` makes its
    /// directory first.
    pub fn create(&self, xml: &str, build: bool) -> Result<Pool, StorageError> {
        let pool = read_pool_xml(xml)?;
        if build {
            make_directory(&pool.path)?;
        }
        check_directory(&pool.path)?;
        self.add(pool, false)
    }

    fn add(&self, document: PoolDocument, persistent: bool) -> Result<Pool, StorageError> {
        self.with(|pools| {
            let same_name = pools.iter().position(|p| p.name == document.name);
            if let Some(other) = pools
                .iter()
                .find(|p| p.name != document.name && p.path == document.path)
            {
                return Err(StorageError::Invalid(format!(
                    "Requested operation is not valid: Storage source conflict with pool: '{}'",
                    other.name
                )));
            }
            if let Some(i) = same_name {
                let old = &mut pools[i];
                if document.uuid.is_some_and(|uuid| uuid != old.uuid) {
                    return Err(StorageError::Invalid(format!(
                        "Requested operation is not valid: pool '{}' is already defined with uuid {}",
                        old.name,
                        format_uuid(&old.uuid)
                    )));
                }
                if !persistent {
                    return Err(StorageError::Invalid(format!(
                        "Requested operation is not valid: pool '{}' already exists",
                        old.name
                    )));
                }
                old.path = document.path;
                old.persistent = true;
                return Ok(old.clone());
            }
            if pools.len() >= MAX_POOLS {
                return Err(StorageError::Unsupported(format!(
                    "this host keeps at most {MAX_POOLS} storage pools"
                )));
            }
            let uuid = document.uuid.unwrap_or_else(random_uuid);
            if pools.iter().any(|p| p.uuid == uuid) {
                return Err(StorageError::Invalid(format!(
                    "Requested operation is not valid: a pool with uuid {} exists",
                    format_uuid(&uuid)
                )));
            }
            let pool = Pool {
                name: document.name,
                uuid,
                path: document.path,
                active: !persistent,
                persistent,
                autostart: false,
            };
            pools.push(pool.clone());
            Ok(pool)
        })
    }

    /// Changes the pool named `name` under the lock.
    fn update<R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut Pool) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        self.with(|pools| {
            let pool = pools
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| no_pool(format!("no storage pool with matching name '{name}'")))?;
            change(pool)
        })
    }

    /// `pool-start`: the directory must exist.
    pub fn start(&self, name: &str) -> Result<(), StorageError> {
        self.update(name, |pool| {
            if pool.active {
                return Err(invalid(format!("storage pool '{name}' is already active")));
            }
            check_directory(&pool.path)?;
            pool.active = true;
            Ok(())
        })
    }

    /// `pool-destroy`: a transient pool is gone after it.
    pub fn stop(&self, name: &str) -> Result<(), StorageError> {
        self.update(name, |pool| {
            if !pool.active {
                return Err(invalid(format!("storage pool '{name}' is not active")));
            }
            pool.active = false;
            Ok(())
        })?;
        self.with(|pools| pools.retain(|p| p.active || p.persistent));
        Ok(())
    }

    pub fn undefine(&self, name: &str) -> Result<(), StorageError> {
        self.update(name, |pool| match (pool.persistent, pool.active) {
            (false, _) => Err(invalid(format!("storage pool '{name}' is not persistent"))),
            (true, true) => Err(invalid(format!("storage pool '{name}' is still active"))),
            (true, false) => Ok(()),
        })?;
        self.with(|pools| pools.retain(|p| p.name != name));
        Ok(())
    }

    /// `pool-build`: makes the directory (as `mkdir -p`; an existing one is fine).
    pub fn build(&self, name: &str) -> Result<(), StorageError> {
        let pool = self.by_name(name)?;
        if pool.active {
            return Err(invalid(format!("storage pool '{name}' is already active")));
        }
        make_directory(&pool.path)
    }

    /// `pool-refresh`: volumes are read at each call, so only the state is checked.
    pub fn refresh(&self, name: &str) -> Result<(), StorageError> {
        active(self.by_name(name)?).map(|_| ())
    }

    pub fn set_autostart(&self, name: &str, autostart: bool) -> Result<(), StorageError> {
        self.update(name, |pool| {
            if !pool.persistent {
                return Err(invalid(format!(
                    "cannot set autostart for transient storage pool '{name}'"
                )));
            }
            pool.autostart = autostart;
            Ok(())
        })
    }

    /// The pool's volumes, by name.
    pub fn volumes(&self, name: &str) -> Result<Vec<Volume>, StorageError> {
        let pool = active(self.by_name(name)?)?;
        let entries = std::fs::read_dir(&pool.path).map_err(|e| {
            StorageError::Failed(format!("cannot read {}: {e}", pool.path.display()))
        })?;
        let mut volumes: Vec<Volume> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                Some(Volume {
                    pool: pool.name.clone(),
                    path: pool.path.join(&name),
                    name,
                })
            })
            .take(MAX_VOLUMES)
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    pub fn volume_by_name(&self, pool: &str, name: &str) -> Result<Volume, StorageError> {
        let pool = active(self.by_name(pool)?)?;
        volume_in(&pool, name)
            .ok_or_else(|| no_volume(format!("no storage vol with matching name '{name}'")))
    }

    /// A volume by its path (or key, which is its path): a file directly in an active pool's
    /// directory.
    pub fn volume_by_path(&self, path: &str) -> Result<Volume, StorageError> {
        let missing = || no_volume(format!("no storage vol with matching path '{path}'"));
        let path = Path::new(path);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(missing());
        };
        let name = name.to_str().ok_or_else(missing)?;
        self.find(|p| p.active && p.path == dir)
            .and_then(|pool| volume_in(&pool, name))
            .ok_or_else(missing)
    }
}

/// The volume `name` of `pool`, if that file is there.
fn volume_in(pool: &Pool, name: &str) -> Option<Volume> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    let path = pool.path.join(name);
    std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
    Some(Volume {
        pool: pool.name.clone(),
        name: name.to_string(),
        path,
    })
}

fn active(pool: Pool) -> Result<Pool, StorageError> {
    if pool.active {
        Ok(pool)
    } else {
        Err(invalid(format!(
            "storage pool '{}' is not active",
            pool.name
        )))
    }
}

fn no_pool(detail: String) -> StorageError {
    StorageError::NoPool(format!("Storage pool not found: {detail}"))
}

fn no_volume(detail: String) -> StorageError {
    StorageError::NoVolume(format!("Storage volume not found: {detail}"))
}

fn invalid(detail: String) -> StorageError {
    StorageError::Invalid(format!("Requested operation is not valid: {detail}"))
}

fn make_directory(path: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(path)
        .map_err(|e| StorageError::Failed(format!("cannot create {}: {e}", path.display())))
}

fn check_directory(path: &Path) -> Result<(), StorageError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(StorageError::Failed(format!(
            "cannot open directory '{}': Not a directory",
            path.display()
        ))),
        Err(e) => Err(StorageError::Failed(format!(
            "cannot open directory '{}': {e}",
            path.display()
        ))),
    }
}

/// A volume's size and what it takes on disk.
pub fn volume_size(volume: &Volume) -> Result<VolumeSize, StorageError> {
    let meta = std::fs::metadata(&volume.path)
        .map_err(|e| StorageError::Failed(format!("cannot stat {}: {e}", volume.path.display())))?;
    Ok(VolumeSize {
        capacity: meta.len(),
        allocation: meta.blocks() * 512,
    })
}

/// The pool's file system: its size, what is used, what is free for us.
pub fn pool_space(pool: &Pool) -> PoolSpace {
    match nix::sys::statvfs::statvfs(&pool.path) {
        Ok(fs) if pool.active => {
            let block = fs.fragment_size();
            let capacity = fs.blocks() * block;
            let free = fs.blocks_free() * block;
            PoolSpace {
                capacity,
                allocation: capacity.saturating_sub(free),
                available: fs.blocks_available() * block,
            }
        }
        _ => PoolSpace {
            capacity: 0,
            allocation: 0,
            available: 0,
        },
    }
}

/// `pool-dumpxml`.
pub fn pool_xml(pool: &Pool) -> String {
    let space = pool_space(pool);
    let mut w = XmlWriter::new();
    w.open("pool", &[("type", "dir")])
        .text("name", &[], &pool.name)
        .text("uuid", &[], &format_uuid(&pool.uuid));
    for (element, value) in [
        ("capacity", space.capacity),
        ("allocation", space.allocation),
        ("available", space.available),
    ] {
        w.text(element, &[("unit", "bytes")], &value.to_string());
    }
    w.empty("source", &[])
        .open("target", &[])
        .text("path", &[], &pool.path.display().to_string());
    w.finish()
}

/// `vol-dumpxml`.
pub fn volume_xml(volume: &Volume) -> Result<String, StorageError> {
    let size = volume_size(volume)?;
    let path = volume.path.display().to_string();
    let mut w = XmlWriter::new();
    w.open("volume", &[("type", "file")])
        .text("name", &[], &volume.name)
        .text("key", &[], &path)
        .text("capacity", &[("unit", "bytes")], &size.capacity.to_string())
        .text(
            "allocation",
            &[("unit", "bytes")],
            &size.allocation.to_string(),
        )
        .open("target", &[])
        .text("path", &[], &path)
        .empty("format", &[("type", "raw")]);
    Ok(w.finish())
}

/// What a pool document says.
pub struct PoolDocument {
    name: String,
    uuid: Option<[u8; 16]>,
    path: PathBuf,
}

fn xml_error(message: impl Into<String>) -> StorageError {
    StorageError::Xml(message.into())
}

/// Reads `<pool type='dir'>`: name, uuid, target path. The sizes a dumped pool carries are
/// read-only and ignored, as libvirt ignores them; anything else is refused by name.
pub fn read_pool_xml(xml: &str) -> Result<PoolDocument, StorageError> {
    if xml.len() > POOL_XML_MAX {
        return Err(xml_error(format!(
            "the pool XML is {} bytes; at most {POOL_XML_MAX} are read",
            xml.len()
        )));
    }
    let doc = Document::parse(xml).map_err(|e| xml_error(format!("XML error: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "pool" {
        return Err(xml_error(format!(
            "XML error: the document is <{}>, not <pool>",
            root.tag_name().name()
        )));
    }
    match root.attribute("type") {
        Some("dir") => {}
        Some(other) => {
            return Err(StorageError::Unsupported(format!(
                "storage pool type '{other}' is not supported (only dir)"
            )))
        }
        None => return Err(xml_error("XML error: <pool> needs type='dir'")),
    }
    let mut name = None;
    let mut uuid = None;
    let mut path = None;
    for child in root.children().filter(Node::is_element) {
        match child.tag_name().name() {
            "name" => name = Some(text(child)),
            "uuid" => {
                let text = text(child);
                uuid = Some(
                    parse_uuid(&text)
                        .ok_or_else(|| xml_error(format!("XML error: '{text}' is not a UUID")))?,
                );
            }
            "capacity" | "allocation" | "available" => {}
            "source" => {
                if let Some(inner) = child.children().find(Node::is_element) {
                    return Err(StorageError::Unsupported(format!(
                        "<{}> in the <source> of a dir pool is not supported",
                        inner.tag_name().name()
                    )));
                }
            }
            "target" => {
                for part in child.children().filter(Node::is_element) {
                    match part.tag_name().name() {
                        "path" => path = Some(PathBuf::from(text(part))),
                        // Owner and mode of the directory: libvirt applies them on build; a
                        // directory made here keeps the process's.
                        "permissions" => {}
                        other => {
                            return Err(StorageError::Unsupported(format!(
                                "<{other}> in a pool's <target> is not supported"
                            )))
                        }
                    }
                }
            }
            other => {
                return Err(StorageError::Unsupported(format!(
                    "element <{other}> in <pool> is not supported"
                )))
            }
        }
    }
    let name = name
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| xml_error("XML error: the pool needs a <name> without '/'"))?;
    let path = path
        .filter(|p| p.is_absolute())
        .ok_or_else(|| xml_error("XML error: the pool needs an absolute <target><path>"))?;
    Ok(PoolDocument {
        name,
        uuid,
        path: normalize(&path),
    })
}

fn text(node: Node) -> String {
    node.text().unwrap_or("").trim().to_string()
}

/// `/a/b/` and `/a//b` are the pool `/a/b`, as libvirt cleans a target path.
fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

#[cfg(test)]
mod tests;
