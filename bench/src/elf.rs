//! Whether an executable is static: an ELF file without a PT_INTERP program header needs no
//! dynamic loader (static-pie binaries have PT_DYNAMIC but still no PT_INTERP).

use crate::error::{bail, Context, Result};
use std::path::Path;

const PT_INTERP: u32 = 3;

/// The interpreter (dynamic loader) an ELF executable names, or `None` if it is static.
pub fn interpreter(path: &Path) -> Result<Option<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    interpreter_of(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn interpreter_of(bytes: &[u8]) -> Result<Option<String>> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    let is_64 = match bytes[4] {
        1 => false,
        2 => true,
        class => bail!("unknown ELF class {class}"),
    };
    let little = match bytes[5] {
        1 => true,
        2 => false,
        order => bail!("unknown ELF byte order {order}"),
    };
    let read = |offset: usize, size: usize| -> Result<u64> {
        let field = bytes
            .get(offset..offset + size)
            .context("header runs past the end of the file")?;
        let mut value = 0u64;
        for index in 0..size {
            let byte = if little {
                field[size - 1 - index]
            } else {
                field[index]
            };
            value = value << 8 | u64::from(byte);
        }
        Ok(value)
    };
    let (phoff, phentsize, phnum) = if is_64 {
        (read(0x20, 8)?, read(0x36, 2)?, read(0x38, 2)?)
    } else {
        (read(0x1c, 4)?, read(0x2a, 2)?, read(0x2c, 2)?)
    };
    for index in 0..phnum {
        let header = (phoff + index * phentsize) as usize;
        if read(header, 4)? as u32 != PT_INTERP {
            continue;
        }
        let (offset, size) = if is_64 {
            (read(header + 0x08, 8)?, read(header + 0x20, 8)?)
        } else {
            (read(header + 0x04, 4)?, read(header + 0x10, 4)?)
        };
        let name = bytes
            .get(offset as usize..(offset + size) as usize)
            .context("PT_INTERP runs past the end of the file")?;
        let name = name.split(|&byte| byte == 0).next().unwrap_or_default();
        return Ok(Some(String::from_utf8_lossy(name).into_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executable_names_its_loader() {
        let loader = interpreter(Path::new("/bin/sh")).unwrap();
        assert!(loader.is_some_and(|name| name.contains("ld")));
    }

    #[test]
    fn non_elf_is_an_error() {
        assert!(
            interpreter_of(b"#!/bin/sh\necho not elf, but long enough to have a header....\n")
                .is_err()
        );
    }
}
