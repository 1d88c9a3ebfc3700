"""Protocol Buffers contracts of the billing and ERP adapters, with their generated stubs."""
