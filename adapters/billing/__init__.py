"""The BillingAdapter: a gRPC service in front of a billing backend."""
