#!/usr/bin/env python3
"""Generate the Yocto crate list (cbox-crates.inc) from Cargo.lock, offline.

oe-core's cargo class fetches every crate from SRC_URI with a checksum; its
`cargo-update-recipe-crates` class would produce the same list by running
bitbake. This script writes it straight from Cargo.lock (which holds the
crates.io checksums), so no build host is needed, and `--check` fails when
the committed file no longer matches the lock file.

    scripts/gen-crates-inc.py            # rewrite the .inc
    scripts/gen-crates-inc.py --check    # exit 1 if it is out of date
"""
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
LOCK = ROOT / "Cargo.lock"
INC = ROOT / "yocto-layer/meta-cbox/recipes-cbox/cbox/cbox-crates.inc"
REGISTRY = "registry+https://github.com/rust-lang/crates.io-index"


def render() -> str:
    lock = tomllib.loads(LOCK.read_text())
    crates = sorted(
        (p["name"], p["version"], p["checksum"])
        for p in lock.get("package", [])
        if p.get("source") == REGISTRY
    )
    missing = [f"{n} {v}" for n, v, c in crates if not c]
    if missing:
        sys.exit(f"Cargo.lock has crates without a checksum: {', '.join(missing)}")
    lines = [
        "# Generated from Cargo.lock by scripts/gen-crates-inc.py; do not edit.",
        "# Check: scripts/gen-crates-inc.py --check (part of the test command).",
        "",
        'SRC_URI += "\\',
    ]
    lines += [f"    crate://crates.io/{n}/{v};name={n}-{v} \\" for n, v, _ in crates]
    lines += ['"', ""]
    lines += [f'SRC_URI[{n}-{v}.sha256sum] = "{c}"' for n, v, c in crates]
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not INC.exists() or INC.read_text() != text:
            print(f"{INC.relative_to(ROOT)} is out of date with Cargo.lock; run scripts/gen-crates-inc.py", file=sys.stderr)
            return 1
        print(f"{INC.relative_to(ROOT)}: up to date ({text.count('crate://')} crates)")
        return 0
    INC.parent.mkdir(parents=True, exist_ok=True)
    INC.write_text(text)
    print(f"wrote {INC.relative_to(ROOT)} ({text.count('crate://')} crates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
