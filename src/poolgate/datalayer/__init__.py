"""poolgate.datalayer."""
