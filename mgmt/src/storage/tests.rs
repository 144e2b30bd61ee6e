use super::*;

/// A scratch directory with two files and a subdirectory; removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("mgmt-storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("b.img"), vec![0u8; 8192]).unwrap();
    std::fs::write(dir.join("a.iso"), b"x").unwrap();
    Scratch(dir)
}

fn pool_doc(name: &str, dir: &Path) -> String {
    format!(
        "<pool type='dir'><name>{name}</name><target><path>{}/</path></target></pool>",
        dir.display()
    )
}

#[test]
fn a_defined_pool_lists_its_files_once_started() {
    let dir = scratch("define");
    let pools = StoragePools::new();
    let pool = pools.define(&pool_doc("p", &dir)).unwrap();
    assert_eq!(pool.path, *dir, "the trailing slash is cleaned");
    assert!(pool.persistent && !pool.active);
    assert!(matches!(pools.volumes("p"), Err(StorageError::Invalid(_))));
    pools.start("p").unwrap();
    let names: Vec<String> = pools
        .volumes("p")
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["a.iso", "b.img"], "regular files only, sorted");
    let path = dir.join("b.img");
    let volume = pools.volume_by_path(path.to_str().unwrap()).unwrap();
    assert_eq!((volume.pool.as_str(), volume.name.as_str()), ("p", "b.img"));
    assert_eq!(volume_size(&volume).unwrap().capacity, 8192);
    for missing in ["sub", "..", "nosuch", "a/b"] {
        assert!(matches!(
            pools.volume_by_name("p", missing),
            Err(StorageError::NoVolume(_))
        ));
    }
    assert!(pools
        .volume_by_path(dir.join("sub").to_str().unwrap())
        .is_err());
    assert!(matches!(pools.undefine("p"), Err(StorageError::Invalid(_))));
    pools.stop("p").unwrap();
    pools.undefine("p").unwrap();
    assert!(pools.list().is_empty());
}

#[test]
fn the_dumped_pool_defines_the_same_pool_again() {
    let dir = scratch("dump");
    let pools = StoragePools::new();
    let pool = pools.define(&pool_doc("p", &dir)).unwrap();
    let again = pools.define(&pool_xml(&pool)).unwrap();
    assert_eq!(again, pool);
    let volume_doc = {
        pools.start("p").unwrap();
        volume_xml(&pools.volume_by_name("p", "a.iso").unwrap()).unwrap()
    };
    assert!(volume_doc.contains(&format!("<key>{}/a.iso</key>", dir.display())));
    assert!(volume_doc.contains("<capacity unit='bytes'>1</capacity>"));
}

#[test]
fn a_transient_pool_is_gone_when_stopped() {
    let dir = scratch("transient");
    let pools = StoragePools::new();
    assert!(matches!(
        pools.create(&pool_doc("t", &dir.join("new")), false),
        Err(StorageError::Failed(_))
    ));
    let pool = pools
        .create(&pool_doc("t", &dir.join("new")), true)
        .unwrap();
    assert!(pool.active && !pool.persistent);
    assert!(matches!(
        pools.set_autostart("t", true),
        Err(StorageError::Invalid(_))
    ));
    pools.stop("t").unwrap();
    assert!(matches!(pools.by_name("t"), Err(StorageError::NoPool(_))));
}

#[test]
fn what_a_dir_pool_cannot_be_is_refused_by_name() {
    let dir = scratch("refused");
    let pools = StoragePools::new();
    let cases = [
        ("<pool type='logical'><name>x</name></pool>", "'logical'"),
        (
            "<pool type='dir'><name>x</name><target><path>rel</path></target></pool>",
            "absolute",
        ),
        (
            "<pool type='dir'><target><path>/tmp</path></target></pool>",
            "<name>",
        ),
        (
            "<pool type='dir'><name>x</name><source><device path='/dev/sda'/></source></pool>",
            "<device>",
        ),
        (
            "<pool type='dir'><name>x</name><features/></pool>",
            "<features>",
        ),
        ("<pool type='dir'><name>x", "XML error"),
        ("<volume/>", "<volume>"),
    ];
    for (doc, why) in cases {
        let e = pools.define(doc).expect_err(doc);
        let text = format!("{e:?}");
        assert!(text.contains(why), "{doc}: {text}");
    }
    let huge = format!("<pool type='dir'>{}</pool>", " ".repeat(POOL_XML_MAX));
    assert!(matches!(pools.define(&huge), Err(StorageError::Xml(_))));
    pools.define(&pool_doc("one", &dir)).unwrap();
    assert!(
        matches!(pools.define(&pool_doc("two", &dir)), Err(StorageError::Invalid(e)) if e.contains("'one'")),
        "one directory, one pool"
    );
}

#[test]
fn the_pool_list_is_bounded() {
    let pools = StoragePools::new();
    for i in 0..MAX_POOLS {
        pools
            .define(&pool_doc(
                &format!("p{i}"),
                Path::new(&format!("/nonexistent/{i}")),
            ))
            .unwrap();
    }
    let e = pools.define(&pool_doc("over", Path::new("/nonexistent/over")));
    assert!(matches!(e, Err(StorageError::Unsupported(_))));
    assert_eq!(pools.list().len(), MAX_POOLS);
}
