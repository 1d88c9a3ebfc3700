"""The ErpAdapter: a gRPC service in front of a general-ledger backend."""
