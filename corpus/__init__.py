"""The corpus data plane: documents from PubMed XML, PubTator, JSONL, Parquet and text files, cut into work units
by rows or byte ranges; PubMed's versions and deletions; the data contracts, error rows and fault classes every job
shares; the tag job's prepared batches as Arrow tables and its PubTator/BioC exports. Imports `gliner`, never Ray."""
