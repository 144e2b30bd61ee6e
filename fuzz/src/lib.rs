//! What the fuzz targets share: a virtio device behind its MMIO transport over guest memory
//! that each input fills, driven the way a (hostile) driver would.

pub mod tap_peer;
pub mod virtio;
