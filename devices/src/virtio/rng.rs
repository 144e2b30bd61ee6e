//! virtio-rng (entropy source): fills every writable buffer the driver offers with bytes from
//! the host's getrandom(2).

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::{GuestError, VirtioDevice, TYPE_RNG, VIRTIO_F_VERSION_1};

const QUEUE_SIZES: [u16; 1] = [256];
/// Largest single request served (a guest may offer huge buffers; entropy is cheap but not free).
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Default)]
pub struct Rng;

impl Rng {
    pub fn new() -> Rng {
        Rng
    }
}

fn fill_random(buf: &mut [u8]) -> Result<(), GuestError> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most the remaining length into our own buffer.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(GuestError(format!(
                "getrandom: {}",
                std::io::Error::last_os_error()
            )));
        }
        done += n as usize;
    }
    Ok(())
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, GuestError> {
        let mut used_any = false;
        let mut buf = Vec::new();
        while let Some(chain) = queue
            .iter(mem)
            .map_err(|e| GuestError(format!("avail ring: {e:?}")))?
            .next()
        {
            let head = chain.head_index();
            let mut written: u32 = 0;
            for desc in chain {
                if !desc.is_write_only() {
                    return Err(GuestError("virtio-rng: read-only descriptor".into()));
                }
                let len = (desc.len() as usize).min(MAX_REQUEST - written as usize);
                if len == 0 {
                    break;
                }
                buf.resize(len, 0);
                fill_random(&mut buf)?;
                mem.write_slice(&buf, desc.addr())
                    .map_err(|e| GuestError(format!("virtio-rng: buffer outside RAM: {e}")))?;
                written += len as u32;
            }
            queue
                .add_used(mem, head, written)
                .map_err(|e| GuestError(format!("used ring: {e:?}")))?;
            used_any = true;
        }
        Ok(used_any)
    }
}
