import pickle

import pysam
import pytest

from gfssm.tasks.dna import Genome, bundled_genome
from gfssm.tasks.dna.genome import ContigNameError, contig_key


def test_plain_fasta_gets_an_index_and_fetches_exact_text(lambda_fasta, lambda_text, lambda_name):
    assert not lambda_fasta.with_name("lambda_virus.fa.fai").exists()
    genome = Genome(lambda_fasta)
    assert lambda_fasta.with_name("lambda_virus.fa.fai").exists()
    assert genome.lengths == {lambda_name: 48502}
    assert genome.fetch(lambda_name, 0, 48502) == lambda_text
    assert genome.fetch(lambda_name, 12345, 12400) == lambda_text[12345:12400]


def test_bgzip_fasta_gets_fai_and_gzi(tmp_path, lambda_fasta, lambda_text, lambda_name):
    bgz = tmp_path / "lambda.fa.gz"
    with open(lambda_fasta, "rb") as src, pysam.BGZFile(str(bgz), "wb") as dst:
        dst.write(src.read())
    genome = Genome(bgz)
    assert genome.compression == "bgzip"
    assert (tmp_path / "lambda.fa.gz.fai").exists() and (tmp_path / "lambda.fa.gz.gzi").exists()
    assert genome.fetch(lambda_name, 40000, 40100) == lambda_text[40000:40100]


def test_bundled_ecoli_is_indexed_package_data():
    genome = Genome(bundled_genome())
    assert genome.lengths == {"gi|110640213|ref|NC_008253.1|": 4938920}
    assert genome.compression == "bgzip"
    assert genome.fetch(genome.contigs[0], 0, 12) == "AGCTTTTCATTC"


def test_genome_pickles_without_its_handle(lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    genome.fetch(lambda_name, 0, 5)
    clone = pickle.loads(pickle.dumps(genome))
    assert clone.fetch(lambda_name, 100, 130) == genome.fetch(lambda_name, 100, 130)


def test_tokens_of_a_stretch(lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    ids, soft = genome.tokens(lambda_name, 0, 8)
    assert genome.fetch(lambda_name, 0, 8) == "GGGCGGCG"
    assert ids.tolist() == [2, 2, 2, 1, 2, 2, 1, 2] and not soft.any()


def test_genbank_becomes_fasta_and_feature_bed(tmp_path, data_dir, cache_dir):
    gbk = tmp_path / "phix.gbk"
    gbk.write_bytes((data_dir / "phiX174_NC_001422.gbk").read_bytes())
    genome = Genome(gbk, cache_dir=cache_dir)
    assert genome.lengths == {"NC_001422.1": 5386}
    assert genome.fetch("NC_001422.1", 0, 20) == "GAGTTTTATCGCTTCCATGA"
    lines = genome.features_bed.read_text().splitlines()
    cds = [line.split("\t") for line in lines if line.split("\t")[3].startswith("CDS:")]
    # 11 CDS; those joined across the origin give one BED line per part
    assert len({(c[3], c[5]) for c in cds}) == 11
    first = lines[0].split("\t")
    assert first[0] == "NC_001422.1" and int(first[1]) < int(first[2]) <= 5386
    # made once, reused
    again = Genome(gbk, cache_dir=cache_dir)
    assert again.path == genome.path


def test_contig_names_that_mean_the_same_sequence():
    assert contig_key("gi|110640213|ref|NC_008253.1|") == "nc_008253"
    assert contig_key("NC_008253") == contig_key("NC_008253.1") == contig_key("chrNC_008253")
    assert contig_key("chr1") == contig_key("1") != contig_key("11")


def test_unknown_contig_suggests_the_alias(lambda_fasta, lambda_name):
    genome = Genome(lambda_fasta)
    with pytest.raises(ContigNameError) as err:
        genome.resolve("NC_001416", where="calls.vcf line 3")
    message = str(err.value)
    assert "calls.vcf line 3" in message and lambda_name in message
    assert "contig_aliases" in message
    aliased = Genome(lambda_fasta, aliases={"NC_001416": lambda_name})
    assert aliased.fetch("NC_001416", 0, 5) == genome.fetch(lambda_name, 0, 5)
