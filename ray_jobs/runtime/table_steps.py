"""Ray Data steps over Arrow tables, shared by the jobs that shuffle (curate's duplicate removal, tag's PubMed
versions): a function per batch, and a function per hash partition."""
from __future__ import annotations


def map_tables(dataset, function, batch_size=None, **kwargs):
    """function(table, **kwargs) -> table on each batch (whole blocks unless batch_size is set)."""
    return dataset.map_batches(function, batch_format="pyarrow", batch_size=batch_size, fn_kwargs=kwargs)


def per_partition(dataset, function, num_partitions: int, **kwargs):
    """function(table, **kwargs) once per partition: every row with the same `partition` value, as one table."""
    return dataset.groupby("partition", num_partitions=num_partitions).map_groups(function, batch_format="pyarrow", fn_kwargs=kwargs)
