"""Ray actors: the pool that parses, validates and canonicalises batches of source messages."""
