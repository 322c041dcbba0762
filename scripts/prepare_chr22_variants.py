#!/usr/bin/env python3
"""Prepare the human chr22 variant demo: a 1 Mb FASTA and its dbSNP variants as a VCF.

The data ship in Debian's ``hisat2`` package (examples/reference/22_20-21M.fa and .snp:
human chr22:20,000,001-21,000,000 with 3,502 dbSNP variants; GPL-3+). The package is
fetched with ``apt-get download`` and unpacked with ``dpkg -x`` into the cache directory
(nothing is installed). Writes into the output directory:

- ``chr22_20-21M.fa`` (+ ``.fai``): the sequence, contig ``22:20000001-21000000``;
- ``chr22_20-21M.dbsnp.vcf.gz`` (+ ``.tbi``): SNVs and indels, REF taken from the FASTA.

Usage::

    python scripts/prepare_chr22_variants.py --cache ~/.cache/gfssm/debs --out data/chr22
"""

from __future__ import annotations

import argparse
import glob
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pysam

from gfssm.tasks.dna import Genome
from gfssm.tasks.dna.snp_to_vcf import snp_to_vcf_lines, write_vcf

PACKAGE = "hisat2"
EXAMPLES = Path("usr/share/doc/hisat2/examples/reference")
FASTA, SNP = "22_20-21M.fa", "22_20-21M.snp"


def fetch_package(cache: Path, apt_update: bool) -> tuple[Path, str]:
    """Unpack the hisat2 .deb into ``cache/root`` (once); returns (root, .deb name)."""
    root = cache / "root"
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(glob.glob(str(cache / f"{PACKAGE}_*.deb")))
    if not debs:
        if shutil.which("apt-get") is None:
            sys.exit("apt-get not found: this script needs a Debian/Ubuntu system")
        if apt_update:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
        done = subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=cache, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(
                f"apt-get download {PACKAGE} failed: {done.stderr.strip()}\n"
                f"(if the package is unknown, run with --apt-update, or `apt-get update` first)"
            )
        debs = sorted(glob.glob(str(cache / f"{PACKAGE}_*.deb")))
    deb = Path(debs[-1])
    if not (root / EXAMPLES / SNP).exists():
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    if not (root / EXAMPLES / SNP).exists():
        sys.exit(f"{deb.name} has no {EXAMPLES / SNP}; this package version lacks the example")
    return root, deb.name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="where the .deb is kept")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--apt-update", action="store_true", help="run apt-get update first")
    args = parser.parse_args(argv)

    root, deb = fetch_package(args.cache, args.apt_update)
    args.out.mkdir(parents=True, exist_ok=True)
    fasta = args.out / "chr22_20-21M.fa"
    shutil.copyfile(root / EXAMPLES / FASTA, fasta)
    Path(f"{fasta}.fai").unlink(missing_ok=True)
    genome = Genome(fasta)
    lines, problems = snp_to_vcf_lines(root / EXAMPLES / SNP, genome)
    vcf = write_vcf(
        lines,
        genome,
        args.out / "chr22_20-21M.dbsnp.vcf",
        source=f"GFSSM prepare_chr22_variants.py from {deb} {EXAMPLES / SNP}",
    )
    compressed = pysam.tabix_index(str(vcf), preset="vcf", force=True)
    kinds = Counter("SNV" if len(v.ref) == len(v.alt) else "indel" for v in lines)
    print(f"{genome}: {len(lines)} variants ({kinds['SNV']} SNVs, {kinds['indel']} indels)")
    for problem in problems:
        print(f"left out: {problem}")
    print(f"wrote {fasta} and {compressed}")


if __name__ == "__main__":
    main()
