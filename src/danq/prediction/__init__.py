"""Scoring DNA changes with a trained model: variant effects from a VCF and a genome FASTA.

genome: random access to the user's FASTA (indexes found, built or kept aside), contig names
reconciled with the VCF's, and the genome build check against what the model was trained on.
variants: VCF records into alleles, the REF check, the reference and alternative windows.
effects: batched scoring through danq.predict.score_with_reverse_complement and the TSV/VCF
outputs of `danq variant-effect`.
"""
