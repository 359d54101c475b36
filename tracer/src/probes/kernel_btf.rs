//! Where a field is in a kernel struct, from the kernel's own type information
//! (`/sys/kernel/btf/vmlinux`): the exit program reads `task_struct.exit_code` of an exiting
//! target to tell how it died (a signal, or its exit status), and the offset differs with every
//! kernel build.
//!
//! A minimal BTF reader: the header, then each type in order (a 12-byte head and a tail whose
//! length its kind says), enough to find one member of one struct.

/// The kernel's BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn name_at(strings: &[u8], offset: u32) -> Option<&[u8]> {
    let rest = strings.get(offset as usize..)?;
    Some(&rest[..rest.iter().position(|&b| b == 0)?])
}

/// The bytes after a type's 12-byte head, by kind (`include/uapi/linux/btf.h`).
fn tail_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // int, var, decl tag
        2 | 7..=12 | 16 | 18 => 0,    // ptr, fwd, typedef, qualifiers, func, float, type tag
        3 => 12,                      // array
        4 | 5 | 15 | 19 => 12 * vlen, // struct, union, datasec, enum64
        6 | 13 => 8 * vlen,           // enum, func proto
        _ => return None,
    })
}

/// The byte offset of member `member` of the struct `structure` in the BTF `data`; members
/// of anonymous structs and unions inside it count too. None when either is not there (or
/// the member is a bit field).
pub fn member_offset(data: &[u8], structure: &str, member: &str) -> Option<u32> {
    if data.get(..2)? != MAGIC.to_le_bytes() {
        return None;
    }
    let header_len = u32_at(data, 4)? as usize;
    let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
    let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
    let types = data.get(header_len + type_off..header_len + type_off + type_len)?;
    let strings = data.get(header_len + str_off..header_len + str_off + str_len)?;
    // Where each type starts; type ids count from 1.
    let mut starts = vec![0usize];
    let mut at = 0;
    while at + 12 <= types.len() {
        starts.push(at);
        let info = u32_at(types, at + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        at += 12 + tail_len(kind, vlen)?;
    }
    let find = |id: usize, depth: usize| -> Option<u32> {
        find_member(types, strings, &starts, id, member, depth)
    };
    (1..starts.len()).find_map(|id| {
        let at = starts[id];
        let info = u32_at(types, at + 4)?;
        let kind = (info >> 24) & 0x1f;
        (kind == KIND_STRUCT && name_at(strings, u32_at(types, at)?)? == structure.as_bytes())
            .then(|| find(id, 0))
            .flatten()
    })
}

/// The offset of `member` in the struct or union with type id `id`, looking into anonymous
/// members up to a few levels.
fn find_member(
    types: &[u8],
    strings: &[u8],
    starts: &[usize],
    id: usize,
    member: &str,
    depth: usize,
) -> Option<u32> {
    let at = *starts.get(id)?;
    let info = u32_at(types, at + 4)?;
    let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
    if kind != KIND_STRUCT && kind != KIND_UNION {
        return None;
    }
    for i in 0..vlen {
        let entry = at + 12 + 12 * i;
        let (name, ty, offset) = (
            u32_at(types, entry)?,
            u32_at(types, entry + 4)?,
            u32_at(types, entry + 8)?,
        );
        // With the kind flag, the top byte is a bit field's size.
        let (bits, bit_field) = if kind_flag == 1 {
            (offset & 0xff_ffff, offset >> 24 != 0)
        } else {
            (offset, false)
        };
        if name == 0 && depth < 4 {
            if let Some(inner) = find_member(types, strings, starts, ty as usize, member, depth + 1)
            {
                return Some(bits / 8 + inner);
            }
            continue;
        }
        if name_at(strings, name)? == member.as_bytes() {
            return (!bit_field && bits % 8 == 0).then_some(bits / 8);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: int (id 1), an anonymous union { int a; } (id 2), and
    /// struct task_struct { int pid; union { int exit_code; }; int last; } (id 3).
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0task_struct\0pid\0exit_code\0last\0".to_vec();
        let name = |s: &str| {
            let needle = format!("\0{s}\0");
            (strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1) as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        push(&[name("int"), 1 << 24, 4, 32]); // int, 4 bytes, 32 bits
        push(&[0, (5 << 24) | 1, 4, name("exit_code"), 1, 0]);
        push(&[name("task_struct"), (4 << 24) | 3, 12]);
        push(&[name("pid"), 1, 0, 0, 2, 32, name("last"), 1, 64]);
        let mut data = Vec::new();
        data.extend(MAGIC.to_le_bytes());
        data.extend([1, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            data.extend(word.to_le_bytes());
        }
        data.extend(&types);
        data.extend(&strings);
        data
    }

    #[test]
    fn members_are_found_also_in_anonymous_unions() {
        let data = blob();
        assert_eq!(member_offset(&data, "task_struct", "pid"), Some(0));
        assert_eq!(member_offset(&data, "task_struct", "exit_code"), Some(4));
        assert_eq!(member_offset(&data, "task_struct", "last"), Some(8));
        assert_eq!(member_offset(&data, "task_struct", "comm"), None);
        assert_eq!(member_offset(&data, "mm_struct", "pid"), None);
        assert_eq!(member_offset(&data[..30], "task_struct", "pid"), None);
        assert_eq!(member_offset(b"not btf at all", "task_struct", "pid"), None);
    }

    #[test]
    fn the_running_kernel_has_task_struct_exit_code() {
        // Every kernel this runs on has BTF (the machines' 5.10 to 6.18), readable by all.
        let data = std::fs::read(VMLINUX_BTF).expect("the kernel's BTF");
        let offset = member_offset(&data, "task_struct", "exit_code").expect("exit_code");
        assert!(offset > 0 && offset < 16384, "{offset}");
    }
}
