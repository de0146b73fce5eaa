"""Checks the Lambda packages `sam build` produced: each function's `bootstrap` is an arm64 ELF
without symbols or debug info, no larger than the limit. Prints a table of sizes.

Usage: python3 check_bootstraps.py <.aws-sam/build dir> <max MiB>
"""

import io
import pathlib
import struct
import sys
import zipfile

AARCH64 = 183  # ELF e_machine


def section_names(elf: bytes) -> list[str]:
    """The names of an ELF64 little-endian file's sections."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    headers = [elf[shoff + i * shentsize : shoff + (i + 1) * shentsize] for i in range(shnum)]
    strtab_offset, = struct.unpack_from("<Q", headers[shstrndx], 0x18)
    names = []
    for header in headers:
        name_offset, = struct.unpack_from("<I", header, 0)
        start = strtab_offset + name_offset
        names.append(elf[start : elf.index(b"\0", start)].decode())
    return names


def zipped_size(name: str, data: bytes) -> int:
    """The size of a deployment package holding just this file (deflate, as SAM zips it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return len(buffer.getvalue())


def main() -> int:
    build_dir, max_mib = pathlib.Path(sys.argv[1]), float(sys.argv[2])
    bootstraps = sorted(build_dir.glob("*/bootstrap"))
    if not bootstraps:
        print(f"package: no */bootstrap under {build_dir}", file=sys.stderr)
        return 1
    problems = []
    print(f"{'function':<16} {'bootstrap':>12} {'zipped':>12}")
    for path in bootstraps:
        function = path.parent.name
        elf = path.read_bytes()
        if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
            problems.append(f"{function}: not a 64-bit little-endian ELF file")
            continue
        machine, = struct.unpack_from("<H", elf, 0x12)
        if machine != AARCH64:
            problems.append(f"{function}: built for ELF machine {machine}, not arm64 ({AARCH64})")
        unstripped = [n for n in section_names(elf) if n == ".symtab" or n.startswith(".debug")]
        if unstripped:
            problems.append(
                f"{function}: carries {', '.join(unstripped)}; the release profile must strip symbols and debug info"
            )
        size, zipped = len(elf), zipped_size("bootstrap", elf)
        print(f"{function:<16} {size / 2**20:>9.1f} MiB {zipped / 2**20:>8.1f} MiB")
        if size > max_mib * 2**20:
            problems.append(f"{function}: bootstrap is {size / 2**20:.1f} MiB, over the {max_mib:g} MiB limit")
    for problem in problems:
        print(f"package: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
